"""``signoff serve --workers 2``: two real worker processes answer on one port (both take
connections), exactly one leads the escalation loop, a worker killed with ``kill -9`` is
replaced (and leadership moves on), and SIGTERM drains everything: held long-polls answer at
once, every worker exits, the supervisor exits 0."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serve_process import SIGNOFF, free_port, http

pytestmark = pytest.mark.slow


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
        return [int(p) for p in fh.read().split()]


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


class Workers:
    def __init__(self, home: Path, port: int) -> None:
        self.log = home / "workers.log"
        self.base = f"http://127.0.0.1:{port}"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [SIGNOFF, "serve", "--workers", "2", "--port", str(port)],
                cwd=home,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def serving(self) -> list[int]:
        if self.proc.poll() is not None:
            pytest.fail(f"signoff serve exited:\n{self.log.read_text()}")
        pids = children(self.proc.pid)
        if len(pids) != 2:
            return []
        try:
            return pids if http("GET", self.base + "/healthz")[0] == 200 else []
        except OSError:
            return []

    def leading_lines(self) -> int:
        return self.log.read_text().count("leading: this process runs the escalation scheduler")


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[Workers, str]]:
    home = tmp_path / "home"
    subprocess.run([SIGNOFF, "init", str(home)], check=True, capture_output=True)
    token = (home / "demo-agent.token").read_text().strip()
    running = Workers(home, free_port())
    try:
        wait_for(running.serving, 60, "two workers serving")
        yield running, token
    finally:
        if running.proc.poll() is None:
            leftover = children(running.proc.pid)
            running.proc.send_signal(signal.SIGTERM)
            try:
                running.proc.wait(20)
            except subprocess.TimeoutExpired:
                running.proc.kill()
                for pid in leftover:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


def test_two_workers_share_one_port_and_one_leads(workers: tuple[Workers, str]) -> None:
    running, token = workers
    pids = running.serving()
    before = {pid: cpu_ticks(pid) for pid in pids}
    body = {"tool": "crm.contacts.read", "arguments": {}}
    # every urllib call is a new connection: the kernel spreads them over both sockets
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(
                lambda _: http("POST", running.base + "/v1/requests", body, token)[0], range(400)
            )
        )
    assert set(statuses) == {201}
    used = {pid: cpu_ticks(pid) - before[pid] for pid in pids}
    assert all(ticks > 0 for ticks in used.values()), used  # both workers served
    wait_for(lambda: running.leading_lines() == 1, 10, "one leader")
    time.sleep(1.5)  # the other worker keeps trying the lock and does not get it
    assert running.leading_lines() == 1


def test_a_killed_worker_is_replaced_and_sigterm_drains_all(
    workers: tuple[Workers, str],
) -> None:
    running, token = workers
    first = running.serving()
    os.kill(first[0], signal.SIGKILL)
    again = wait_for(
        lambda: (p := running.serving()) and set(p) != set(first) and p, 30, "a new worker"
    )
    assert first[1] in again and first[0] not in again
    # leadership is held by one live worker (it moved if the killed one led)
    wait_for(lambda: running.leading_lines() in (1, 2), 10, "a leader")

    status, created = http(
        "POST",
        running.base + "/v1/requests",
        {"tool": "payments.transfer", "arguments": {"amount": 50000, "to": "acct-1"}},
        token,
    )
    assert status == 201 and created["status"] == "pending"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        poll = pool.submit(
            http, "GET", f"{running.base}/v1/requests/{created['id']}?wait=50", None, token
        )
        time.sleep(1.0)  # the long-poll is held by a worker
        assert not poll.done()
        started = time.monotonic()
        running.proc.send_signal(signal.SIGTERM)
        status, body = poll.result(timeout=20)
    assert status == 200 and body["status"] == "pending"  # answered, not cut off
    assert time.monotonic() - started < 10
    assert running.proc.wait(30) == 0
    for pid in again:
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
