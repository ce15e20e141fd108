"""Faults other than a crash, each under the mixed load of ``tests.chaos.load`` and followed by
every check of ``tests.chaos.check`` (nothing acknowledged lost, no step twice, no wrong
allow, no grant used twice, the audit log verifies):

- PostgreSQL restarted mid-load: signoff answers 503 while it is down (never 500), then
  serves again by itself, the same process; restarted between requests: no request after it
  fails;
- the disk holding the SQLite database full: 503 with a clear problem, nothing half-written,
  and service again as soon as space returns, the same process;
- Slack and PagerDuty answering 429, 5xx and time-outs for a while: the API keeps answering,
  escalation steps still run once each, and cards flow again afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from bench.fakes.slack_api import Fault
from tests.chaos.check import Report, check
from tests.chaos.harness import WORKERS, pg_database, rig
from tests.chaos.load import BODIES, Ledger, Load
from tests.chaos.rig import Home
from tests.e2e.serving import Server
from tests.pg_cluster import Cluster

pytestmark = pytest.mark.slow

#: how long a fault lasts: seconds in ``make test``, a minute in ``make chaos``
FAULT_S = float(os.environ.get("SIGNOFF_CHAOS_FAULT_SECONDS", "4"))


def server_errors(ledger: Ledger) -> dict[str, int]:
    """Answers 5xx other than 503 (the fail-closed "store unavailable")."""
    return {
        k: n
        for k, n in ledger.answers.items()
        if k.split()[-1].isdigit() and 500 <= int(k.split()[-1]) < 600 and k.split()[-1] != "503"
    }


async def until_answered(ledger: Ledger, key: str, more_than: int = 0, timeout: float = 60) -> None:
    """Wait until the load has had more than ``more_than`` answers ``key`` (e.g. ``submit 503``)."""
    async with asyncio.timeout(timeout):
        while ledger.answers.get(key, 0) <= more_than:
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def loaded(
    servers: list[Server], http: aiohttp.ClientSession, home: Home
) -> AsyncIterator[Ledger]:
    """The mixed load runs for the duration of the block (auto calls name ``home``'s
    callback endpoint); yields its ledger."""
    ledger = Ledger()
    load = Load(
        servers,
        http,
        ledger,
        seed=int.from_bytes(os.urandom(4)),
        callback_url=home.callbacks.url,
    )
    running = asyncio.ensure_future(load.run(WORKERS))
    try:
        await until_answered(ledger, "submit 201")
        yield ledger
    finally:
        load.stopping.set()
        await running


async def checked(
    home: Home, server: Server, http: aiohttp.ClientSession, ledger: Ledger, *, cards: bool = True
) -> None:
    report = await check(home, server, http, ledger, Report("faults"), cards=cards)
    assert report.clean, (report.line(), report.problems, report.verify_output)


@contextlib.asynccontextmanager
async def on_own_cluster(
    tmp_path: Path,
) -> AsyncIterator[tuple[Cluster, Home, Server, aiohttp.ClientSession]]:
    """One ``signoff serve`` on a PostgreSQL server of its own (which the test may stop)."""
    cluster = Cluster()
    cluster.start()
    try:
        with pg_database(cluster.url) as url:
            async with rig(tmp_path, url, 1) as (home, [server], http):
                yield cluster, home, server, http
    finally:
        cluster.destroy()


@pytest.mark.postgres
async def test_postgresql_restarted_mid_load_503_then_recovery(tmp_path: Path) -> None:
    async with on_own_cluster(tmp_path) as (cluster, home, server, http):
        async with loaded([server], http, home) as ledger:
            cluster.stop("immediate")  # a crash: no checkpoint, connections cut
            await until_answered(ledger, "submit 503")
            served = ledger.answers["submit 201"]
            cluster.start()
            await until_answered(ledger, "submit 201", more_than=served)
        assert server.up and server.starts == 1  # signoff was never restarted
        assert not server_errors(ledger), ledger.answers
        await checked(home, server, http, ledger)


@pytest.mark.postgres
async def test_after_a_postgresql_restart_no_request_fails(tmp_path: Path) -> None:
    # a restart (or a failover) ends every connection signoff holds while they sit idle: each
    # is seen closed before it is used and replaced, so the first requests after it are
    # served like the rest (before, the first read or write on each pool answered 503)
    async with on_own_cluster(tmp_path) as (cluster, _, server, http):

        async def statuses(n: int) -> dict[int, int]:
            seen: dict[int, int] = {}
            for kind in ("auto", "block", "refund") * (n // 3):
                async with http.post(
                    f"{server.base}/v1/requests", json=BODIES[kind], headers=server.auth
                ) as resp:
                    seen[resp.status] = seen.get(resp.status, 0) + 1
            return seen

        before = await statuses(30)
        assert set(before) <= {201, 403}, before  # decided, or blocked: no 5xx
        cluster.stop("fast")
        cluster.start()
        after = await statuses(60)
        assert after == {status: 2 * n for status, n in before.items()}, after
        assert server.up and server.starts == 1


@contextlib.contextmanager
def small_disk(path: Path) -> Iterator[Path]:
    """A 32 MiB tmpfs at ``path`` (needs root: CI runs ``make test`` as root)."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; returns it (deleting it gives the space back)."""
    filler = disk / "filler"
    chunk = b"\0" * (1 << 16)
    # unbuffered: nothing is left in a buffer for close() to flush into the full disk (a
    # buffered file raised ENOSPC again from close, outside the try, when a write was partial)
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


async def test_full_disk_under_sqlite_503_then_recovery(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        async with rig(tmp_path / "home", f"sqlite:///{disk / 'signoff.db'}", 1) as (
            home,
            [server],
            http,
        ):
            async with loaded([server], http, home) as ledger:
                filler = fill(disk)
                await until_answered(ledger, "submit 503")
                async with http.post(
                    f"{server.base}/v1/requests", json=BODIES["auto"], headers=server.auth
                ) as resp:
                    assert resp.status == 503
                    assert "store" in (await resp.json())["detail"]
                await asyncio.sleep(FAULT_S / 2)  # the load keeps meeting the full disk
                served = ledger.answers["submit 201"]
                filler.unlink()
                await until_answered(ledger, "submit 201", more_than=served)
            assert server.up and server.starts == 1
            assert not server_errors(ledger), ledger.answers
            await checked(home, server, http, ledger)


async def test_slack_and_pagerduty_failing_for_a_while(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'signoff.db'}"
    async with rig(tmp_path, db, 1) as (home, [server], http):
        async with loaded([server], http, home) as ledger:
            faults = [
                Fault(429, {"Retry-After": "1"}),
                Fault(500),
                Fault(503),
                Fault(200, delay=12),
            ]
            home.slack.outage(FAULT_S, faults)
            home.pd.outage(FAULT_S, [429, 500, 502, 0])
            await asyncio.sleep(FAULT_S)  # the load runs through the outage
            posted = len(home.slack.cards())
            await until_answered(ledger, "submit 201", more_than=ledger.answers["submit 201"])
        assert not server_errors(ledger), ledger.answers
        failed = [c for c in home.slack.calls if c.status != 200]
        assert failed, "the outage answered nothing"
        await checked(home, server, http, ledger, cards=False)
        # after the outage, cards flow again
        async with http.post(
            f"{server.base}/v1/requests", json=BODIES["refund"], headers=server.auth
        ) as resp:
            assert resp.status == 201
            rid = (await resp.json())["id"]
        await home.slack.wait_for(
            lambda: [m for m in home.slack.cards("C0FINANCE") if rid in str(m.blocks)], timeout=30
        )
        assert len(home.slack.cards()) > posted
