"""Soak: 200 concurrent agents for 60 s against one real ``signoff serve``, on SQLite and on
PostgreSQL (issue 14: PostgreSQL ≥ 70 % of SQLite's calls/s with p99 ≤ 1 s), with one process
and with ``--workers 2``.

Each agent loops over a mix: 70 % auto-tier calls (approved at once), 10 % blocked calls,
20 % confirm-tier calls that long-poll briefly and are then either cancelled by the agent or
approved by a human through the console (half each), the agent's long-poll returning the
decision. A *call* is one HTTP request (submit, long-poll, cancel, console decision).

Prints per backend: calls/s, latency p50/p99 of all calls except the long-polls (which
wait on purpose), errors (transport failures and unexpected statuses), the server's RSS
sampled every 5 s (flat = within ±10 % of its mean after a 15 s warm-up), open file
descriptors, and the server's CPU time per call from /proc/PID/stat (RSS, fds and CPU added
up over the workers). Also the load average: the client runs on the same (shared) machine.
One process is one core's worth of Python (one GIL), which is what the soak saturates; a
second worker gives each backend a second core (SQLite's workers take turns at one file's
write lock). The last lines compare PostgreSQL with SQLite at the same worker count and with
SQLite's best.

Before the soak, on the same fresh server, auto-tier calls one at a time give the sequential
latency (issue 14: PostgreSQL p50 ≤ 1.5 ms).

``SIGNOFF_SOAK_SECONDS`` / ``SIGNOFF_SOAK_AGENTS`` / ``SIGNOFF_SOAK_SEQUENTIAL`` /
``SIGNOFF_SOAK_WORKERS`` (default ``1,2``) change the length, the concurrency, the sequential
calls and the worker counts; ``SIGNOFF_BENCH_PG_URL`` (else
``SIGNOFF_TEST_PG_URL``, which ``make bench`` sets to a throwaway cluster) names the
PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.serving import (
    add_agent,
    add_user,
    console_session,
    free_port,
    pg_admin_url,
    proc_stat,
    scratch_database,
    serve,
    wait_ready,
    write_home,
)
from bench.stats import percentile

SECONDS = float(os.environ.get("SIGNOFF_SOAK_SECONDS", "60"))
#: auto-tier calls sent one at a time before the soak (the first tenth is warm-up)
SEQUENTIAL = int(os.environ.get("SIGNOFF_SOAK_SEQUENTIAL", "1000"))
AGENTS = int(os.environ.get("SIGNOFF_SOAK_AGENTS", "200"))
#: the ``signoff serve --workers N`` to soak each backend with (1: one process)
WORKERS = [int(n) for n in os.environ.get("SIGNOFF_SOAK_WORKERS", "1,2").split(",")]
WARM_UP = 15.0
PASSWORD = "soak password 123"
AUTO = {"tool": "crm.contacts.read", "arguments": {"id": 7}}
BLOCK = {"tool": "repos.force_push", "arguments": {"branch": "main"}}


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    calls: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


class Agent:
    def __init__(self, http: aiohttp.ClientSession, base: str, token: str, tally: Tally):
        self.http, self.base, self.tally = http, base, tally
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(
        self, kind: str, method: str, path: str, *, timed: bool = True, **kw: Any
    ) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            async with self.http.request(method, self.base + path, **kw) as resp:
                body = await resp.json(content_type=None) if resp.status != 303 else {}
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.tally.error(type(exc).__name__)
            return {}
        self.tally.calls += 1
        if timed:
            took = time.perf_counter() - started
            self.tally.latencies.append(took)
            self.tally.by_kind.setdefault(kind, []).append(took)
        if status >= 400:
            self.tally.error(f"HTTP {status}")
            return {}
        return body if isinstance(body, dict) else {}

    async def submit(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.call(kind, "POST", "/v1/requests", json=body, headers=self.headers)


async def agent_loop(
    agent: Agent, stop: float, rng: random.Random, decide: tuple[dict[str, str], str]
) -> None:
    cookie, csrf = decide
    n = 0
    while time.monotonic() < stop:
        n += 1
        roll = rng.random()
        if roll < 0.7:
            await agent.submit("auto", AUTO)
        elif roll < 0.8:
            await agent.submit("block", BLOCK)
        else:
            body = {"tool": "payments.transfer", "arguments": {"amount": 20000 + n}}
            created = await agent.submit("confirm", body)
            rid = created.get("id")
            if not rid:
                continue
            path = f"/v1/requests/{rid}"
            await agent.call("wait", "GET", path + "?wait=0.2", timed=False, headers=agent.headers)
            if rng.random() < 0.5:
                await agent.call("cancel", "POST", path + "/cancel", headers=agent.headers)
            else:
                poll = asyncio.ensure_future(
                    agent.call("wait", "GET", path + "?wait=10", timed=False, headers=agent.headers)
                )
                await agent.call(
                    "decide",
                    "POST",
                    f"/console/requests/{rid}/decide",
                    data={"csrf_token": csrf, "verdict": "approve", "reason": "soak"},
                    headers=cookie,
                    allow_redirects=False,
                )
                if (await poll).get("status") != "approved":
                    agent.tally.error("decision not seen by the long-poll")


class Result(TypedDict):
    """One backend's soak, as ``report`` prints it."""

    sequential_p50_ms: float
    sequential_p99_ms: float
    sequential_errors: int
    calls_per_s: float
    p50_ms: float
    p99_ms: float
    #: p50 / p99 in ms of each kind of call (auto, block, confirm, cancel, decide)
    kinds: dict[str, tuple[float, float]]
    errors: int
    error_kinds: dict[str, int]
    rss_mb: list[float]
    rss_spread: float
    fds: int
    fds_max: int
    cpu_ms_per_call: float


async def soak(root: Path, database_url: str, workers: int) -> Result:
    port = free_port()
    config = write_home(
        root, database_url=database_url, port=port, extra="logging: {level: WARNING}\n"
    )
    tokens = [add_agent(config, f"soak-{i}") for i in range(8)]
    add_user(config, "alice", PASSWORD)
    proc = serve(config, workers)
    base = f"http://127.0.0.1:{port}"
    tally = Tally()
    samples: list[tuple[float, int, int]] = []
    try:
        connector = aiohttp.TCPConnector(limit=AGENTS + 10)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            await wait_ready(http, base, proc)
            decide = await console_session(http, base, "alice", PASSWORD)
            one = Agent(http, base, tokens[0], Tally())
            for _ in range(SEQUENTIAL):
                await one.submit("auto", AUTO)
            sequential = one.tally.latencies[SEQUENTIAL // 10 :]
            cpu0, _, _ = proc_stat(proc.pid)
            started = time.monotonic()
            stop = started + SECONDS

            async def sample() -> None:
                while time.monotonic() < stop:
                    await asyncio.sleep(5)
                    _, rss, fds = proc_stat(proc.pid)
                    samples.append((time.monotonic() - started, rss, fds))

            rng = random.Random(14)
            agents = [Agent(http, base, tokens[i % len(tokens)], tally) for i in range(AGENTS)]
            sampler = asyncio.ensure_future(sample())
            await asyncio.gather(
                *(agent_loop(a, stop, random.Random(rng.random()), decide) for a in agents)
            )
            elapsed = time.monotonic() - started
            sampler.cancel()
            cpu1, _, fds = proc_stat(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    warm = [rss for at, rss, _ in samples if at >= WARM_UP]
    mean = statistics.fmean(warm) if warm else float("nan")
    spread = max(abs(r - mean) / mean for r in warm) if warm else float("nan")
    return {
        "sequential_p50_ms": statistics.median(sequential) * 1000 if sequential else float("nan"),
        "sequential_p99_ms": percentile(sequential, 0.99) * 1000 if sequential else float("nan"),
        "sequential_errors": one.tally.errors,
        "calls_per_s": tally.calls / elapsed,
        "p50_ms": statistics.median(tally.latencies) * 1000 if tally.latencies else float("nan"),
        "p99_ms": percentile(tally.latencies, 0.99) * 1000 if tally.latencies else float("nan"),
        "kinds": {
            kind: (statistics.median(took) * 1000, percentile(took, 0.99) * 1000)
            for kind, took in sorted(tally.by_kind.items())
        },
        "errors": tally.errors,
        "error_kinds": tally.error_kinds,
        "rss_mb": [round(r / 2**20, 1) for _, r, _ in samples],
        "rss_spread": spread,
        "fds": fds,
        "fds_max": max((f for _, _, f in samples), default=fds),
        "cpu_ms_per_call": (cpu1 - cpu0) * 1000 / max(1, tally.calls),
    }


def report(name: str, workers: int, r: Result) -> None:
    spread = r["rss_spread"]
    print(
        f"soak {name}: {AGENTS} agents x {SECONDS:.0f} s"
        + (f", --workers {workers}" if workers > 1 else ", one process")
        + f": {r['calls_per_s']:.0f} calls/s, "
        f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, errors {r['errors']}"
        + (f" {r['error_kinds']}" if r["errors"] else "")
        + f"; server CPU {r['cpu_ms_per_call']:.2f} ms/call; RSS MB every 5 s {r['rss_mb']} "
        f"({'flat' if spread <= 0.10 else 'NOT flat'}: within {spread * 100:.1f} % of its mean "
        f"after {WARM_UP:.0f} s); open fds {r['fds']} (max {r['fds_max']})"
    )
    kinds = ", ".join(f"{k} {p50:.0f} / {p99:.0f}" for k, (p50, p99) in r["kinds"].items())
    print(f"soak {name} p50 / p99 ms by kind of call: {kinds}")
    print(
        f"sequential {name}: auto tier one call at a time ({SEQUENTIAL} calls, the first "
        f"{SEQUENTIAL // 10} warm-up, aiohttp client): p50 {r['sequential_p50_ms']:.2f} ms, "
        f"p99 {r['sequential_p99_ms']:.2f} ms, errors {r['sequential_errors']}"
    )


async def main() -> None:
    pg_admin_url("soak")  # before the SQLite half: say now if there is no PostgreSQL
    rates: dict[tuple[str, int], float] = {}
    for workers in WORKERS:
        with tempfile.TemporaryDirectory() as tmp:
            result = await soak(Path(tmp) / "sqlite", "", workers)
        report("SQLite", workers, result)
        rates["SQLite", workers] = result["calls_per_s"]
        with scratch_database("soak") as url, tempfile.TemporaryDirectory() as tmp:
            result = await soak(Path(tmp), url, workers)
        report("PostgreSQL", workers, result)
        rates["PostgreSQL", workers] = result["calls_per_s"]
    best = max(WORKERS, key=lambda w: rates["SQLite", w])
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    for workers in WORKERS:
        pg = rates["PostgreSQL", workers]
        print(
            f"soak: PostgreSQL with {workers} worker(s) at "
            f"{pg / rates['SQLite', workers] * 100:.0f} % of SQLite's calls/s with as many, "
            f"{pg / rates['SQLite', best] * 100:.0f} % of SQLite's best ({best} worker(s)) "
            f"(target >= 70 %, PostgreSQL p99 <= 1 s); load average {load}"
        )


if __name__ == "__main__":
    asyncio.run(main())
