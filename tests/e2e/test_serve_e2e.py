"""The real ``signoff serve`` process, started as a user would, driven over HTTP."""

from __future__ import annotations

import base64
import contextlib
import http.server as http_server
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.serve_process import SIGNOFF, Server, free_port, http, init_home

pytestmark = pytest.mark.slow


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    out = subprocess.run([SIGNOFF, "init", str(home)], capture_output=True, text=True, check=True)
    assert "signoff.yaml" in out.stdout
    port = free_port()
    config = home / "signoff.yaml"
    text = (
        config.read_text()
        .replace("port: 8080", f"port: {port}")
        .replace("http://127.0.0.1:8080", f"http://127.0.0.1:{port}")
    )
    config.write_text(text)
    return home


@pytest.fixture
def server(home: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    config = home / "signoff.yaml"
    port = int(config.read_text().split("port: ")[1].split()[0])
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TEAMS_", "PAGERDUTY_"))
    }
    log_path = home / "serve.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [SIGNOFF, "--config", str(config), "serve"],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.close()
            pytest.fail(f"signoff serve exited early:\n{log_path.read_text()}")
        try:
            if http("GET", base + "/healthz")[0] == 200:
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        proc.wait()
        log.close()
        pytest.fail("signoff serve did not become healthy")
    try:
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_init_agents_and_requests_through_a_real_server(
    home: Path, server: tuple[str, subprocess.Popen[str]]
) -> None:
    base, proc = server
    config = str(home / "signoff.yaml")
    token = subprocess.run(
        [SIGNOFF, "--config", config, "agents", "add", "e2e-agent", "--quiet"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert token.startswith("so_") and "\n" not in token
    listed = subprocess.run(
        [SIGNOFF, "--config", config, "agents", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert "e2e-agent" in listed and "demo-agent" in listed

    status, auto = http(
        "POST", base + "/v1/requests", {"tool": "crm.read", "arguments": {"id": 1}}, token
    )
    assert status == 201 and auto["status"] == "approved" and auto["grant"]

    status, blocked = http(
        "POST",
        base + "/v1/requests",
        {"tool": "repos.force_push", "arguments": {"branch": "main"}},
        token,
    )
    assert status == 201 and blocked["status"] == "denied" and blocked["reason"]

    status, pending = http(
        "POST",
        base + "/v1/requests",
        {
            "tool": "payments.transfer",
            "arguments": {"amount": 25000, "currency": "USD", "to": "acct-123"},
            "justification": "Refund for order 8812",
        },
        token,
    )
    assert status == 201 and pending["status"] == "pending"
    started = time.monotonic()
    status, polled = http("GET", f"{base}/v1/requests/{pending['id']}?wait=1", token=token)
    assert status == 200 and polled["status"] == "pending"
    assert 0.9 <= time.monotonic() - started < 5

    status, problem = http("POST", base + "/v1/requests", {"tool": "x"}, "so_wrong")
    assert status == 401 and problem["status"] == 401

    # `signoff keys rotate` + SIGHUP: the running server signs with the new key at once and
    # keeps publishing the old one
    old_kid = _kid(auto["grant"])
    out = subprocess.run(
        [SIGNOFF, "--config", config, "keys", "rotate"], capture_output=True, text=True, check=True
    )
    new_kid = out.stdout.split()[3].rstrip(";")
    assert new_kid != old_kid
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while True:
        status, again = http(
            "POST", base + "/v1/requests", {"tool": "crm.read", "arguments": {"id": 2}}, token
        )
        if _kid(again["grant"]) == new_kid or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert _kid(again["grant"]) == new_kid
    kids = {k["kid"]: k.get("status") for k in http("GET", base + "/v1/keys")[1]["keys"]}
    assert kids[old_kid] == "retired" and kids[new_kid] == "current"

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def _kid(jwt: str) -> str:
    header = jwt.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def test_serve_refuses_a_bad_policy_with_one_line(home: Path) -> None:
    (home / "policies" / "broken.yaml").write_text(
        "apiVersion: signoff/v1\nkind: ToolPolicy\nrules: ["
    )
    out = subprocess.run(
        [SIGNOFF, "--config", str(home / "signoff.yaml"), "serve"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0
    # the start-up log (WARNINGs for adapters an unset ${VAR} leaves off) comes first
    lines = [
        line for line in out.stderr.strip().splitlines() if not re.match(r"\d{4}-\d\d-\d\d ", line)
    ]
    assert len(lines) == 1 and "broken.yaml" in lines[0] and "Traceback" not in out.stderr


@contextlib.contextmanager
def receiving(handler: type[http_server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A callback receiver on an ephemeral port, in a thread; yields its URL."""
    receiver = http_server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    finally:
        receiver.shutdown()
        receiver.server_close()


def submit_with_callback(server: Server, hook: str, call_id: int) -> dict[str, Any]:
    """POST an auto-tier call naming ``hook`` (with the demo agent's token); its answer."""
    token = (server.config.parent / "demo-agent.token").read_text().strip()
    body = {"tool": "crm.read", "arguments": {"id": call_id}, "callback_url": hook}
    status, answer = http("POST", server.base + "/v1/requests", body, token=token)
    assert (status, answer["status"]) == (201, "approved"), answer
    assert isinstance(answer, dict)
    return answer


def wait_for(condition: Callable[[], object], seconds: float, step: float = 0.02) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(step)


class SlowReceiver(http_server.BaseHTTPRequestHandler):
    """A callback receiver that answers 204 two seconds after each POST."""

    received: ClassVar[list[float]] = []
    answered: ClassVar[list[float]] = []

    def do_POST(self) -> None:
        self.received.append(time.monotonic())
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(2)
        self.answered.append(time.monotonic())
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_sigterm_lets_a_callback_in_flight_finish_before_the_process_exits(
    tmp_path: Path,
) -> None:
    config = init_home(tmp_path, extra_config="callbacks: {allow_private_networks: true}\n")
    server = Server(config)
    with receiving(SlowReceiver) as hook:
        server.start()
        try:
            submit_with_callback(server, hook, 7)
            wait_for(lambda: SlowReceiver.received, 10)
            assert SlowReceiver.received, "the callback never arrived"
            code = server.stop()
            exited = time.monotonic()
        finally:
            server.kill()
    assert code == 0
    # the server waited for the receiver's answer instead of closing the session under it
    assert len(SlowReceiver.answered) == 1 and SlowReceiver.answered[0] <= exited
    log = server.log_path.read_text()
    assert "Traceback" not in log and "Session is closed" not in log, log
    assert " ERROR " not in log and "cancelled" not in log, log


class FlakyReceiver(http_server.BaseHTTPRequestHandler):
    """A callback receiver that answers 503 until ``up`` is set, then 204."""

    seen: ClassVar[list[tuple[str, int]]] = []
    up = threading.Event()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        status = 204 if self.up.is_set() else 503
        self.seen.append((self.headers["webhook-id"], status))
        self.send_response(status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_callback_still_retrying_when_its_process_is_killed_is_delivered_by_the_next(
    tmp_path: Path,
) -> None:
    """SIGKILL while the receiver is down: the callback's retries died with the process.
    The process started next takes the callback over once the hold of the killed one runs
    out, and delivers it (the same webhook-id)."""
    config = init_home(tmp_path, extra_config="callbacks: {allow_private_networks: true}\n")
    first, second = Server(config), Server(config)
    with receiving(FlakyReceiver) as hook:
        first.start()
        try:
            answer = submit_with_callback(first, hook, 8)
            wait_for(lambda: FlakyReceiver.seen, 10)
            assert FlakyReceiver.seen == [(f"{answer['id']}.approved", 503)]
            first.kill()
            FlakyReceiver.up.set()
            second.start()
            # the killed process held the callback over its 1 s wait and the next attempt
            # (1 + 10 + 5 s); the new process looks every 5 s
            wait_for(lambda: len(FlakyReceiver.seen) >= 2, 40, step=0.1)
            time.sleep(0.5)  # nothing more follows
            assert second.stop() == 0
        finally:
            first.kill()
            second.kill()
    assert FlakyReceiver.seen == [
        (f"{answer['id']}.approved", 503),
        (f"{answer['id']}.approved", 204),
    ]
    assert "taken over after 1 attempts elsewhere" in second.log_path.read_text()
