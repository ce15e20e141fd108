"""Crash injection: the mixed load (``tests.chaos.load``) against real ``signoff serve``
processes, SIGKILLed at random points and started again, then every check
(``tests.chaos.check``) against a fresh process.

``make test`` runs a few kills per backend (``tests/chaos/test_kills.py``); ``make chaos``
runs ``python -m tests.chaos`` (200 kills on SQLite and on PostgreSQL) and prints the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp

from bench.fakes.slack_api import FakeSlack
from bench.serving import fresh_database
from tests.chaos.check import Report, check
from tests.chaos.load import Ledger, Load
from tests.chaos.rig import Home
from tests.e2e.serving import Server
from tests.fakes.pagerduty import FakePagerDuty
from tests.pg_cluster import admin_url

#: how long the load runs between two kills: long enough for requests to be acknowledged,
#: decided, escalated and executed, short enough that each process dies mid-flight
UP_S = (0.3, 1.5)
WORKERS = 6


@contextlib.contextmanager
def pg_database(admin: str | None = None) -> Iterator[str]:
    """A fresh database on the test PostgreSQL server, dropped afterwards."""
    with fresh_database(admin or admin_url(), "signoff_chaos") as url:
        yield url


@contextlib.asynccontextmanager
async def rig(
    root: Path, database_url: str, replicas: int
) -> AsyncIterator[tuple[Home, list[Server], aiohttp.ClientSession]]:
    """A prepared home with its fakes, ``replicas`` started servers and an HTTP client."""
    slack, pd = FakeSlack(), FakePagerDuty()
    await slack.start()
    await pd.start()
    timeout = aiohttp.ClientTimeout(total=15)
    servers: list[Server] = []
    home: Home | None = None
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            home = Home(root, database_url, slack, pd)
            await home.callbacks.start()
            await home.prepare()
            servers = [Server(home) for _ in range(replicas)]
            await asyncio.gather(*(s.start(http) for s in servers))
            yield home, servers, http
    finally:
        await asyncio.gather(*(s.stop() for s in servers))
        await slack.close()
        await pd.close()
        if home is not None:
            await home.callbacks.close()


async def run_kills(
    backend: str, root: Path, database_url: str, kills: int, seed: int | None = None
) -> Report:
    """``kills`` SIGKILLs under load, then the checks. SQLite runs one process; PostgreSQL
    two replicas, one of them killed each time while the other serves."""
    seed = random.randrange(2**32) if seed is None else seed
    chooser = random.Random(seed)
    report = Report(backend)
    report.problems.append(f"seed {seed}")
    began = time.monotonic()
    async with rig(root, database_url, 1 if backend == "sqlite" else 2) as (home, servers, http):
        report.seconds["setup"] = time.monotonic() - began
        ledger = Ledger()
        load = Load(servers, http, ledger, seed, callback_url=home.callbacks.url)
        running = asyncio.ensure_future(load.run(WORKERS))
        try:
            for _ in range(kills):
                await asyncio.sleep(chooser.uniform(*UP_S))
                if running.done():
                    break
                victim = chooser.choice(servers)
                await victim.kill9()
                report.kills += 1
                await victim.start(http)
                if report.kills % 20 == 0:
                    print(
                        f"{backend}: {report.kills} kills, {len(ledger.entries)} acknowledged, "
                        f"{time.monotonic() - began:.0f} s",
                        flush=True,
                    )
        finally:
            load.stopping.set()
            await running
        # one last crash of every process, then a fresh one answers for all of them
        for server in servers:
            await server.kill9()
        await servers[0].start(http)
        report.seconds["kills"] = time.monotonic() - began - report.seconds["setup"]
        await check(home, servers[0], http, ledger, report)
    report.seconds["total"] = time.monotonic() - began
    return report
