"""Auto-tier request over HTTP, one server process, loopback (SPEC §9).

Starts ``signoff serve`` on a fresh home, then (1) sends auto-tier requests at a fixed
1,000 req/s and reports p50/p99 latency, (2) saturates it with concurrent clients and
reports throughput. Targets: p50 ≤ 1 ms, p99 ≤ 5 ms at 1,000 req/s; ≥ 3,000 req/s.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

SIGNOFF = str(Path(sys.executable).with_name("signoff"))
RATE = int(os.environ.get("BENCH_RATE", "1000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


async def paced(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> list[float]:
    body = json.dumps({"tool": "crm.read", "arguments": {"id": 1}})
    latencies: list[float] = []
    interval = 1.0 / RATE
    start = time.perf_counter()
    tasks = []

    async def one() -> None:
        t0 = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as resp:
            await resp.read()
            assert resp.status == 201, resp.status
        latencies.append(time.perf_counter() - t0)

    n = int(RATE * SECONDS)
    for i in range(n):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return latencies


async def saturate(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> float:
    body = json.dumps({"tool": "crm.read", "arguments": {"id": 2}})
    stop = time.perf_counter() + SECONDS
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done / (time.perf_counter() - t0)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        subprocess.run([SIGNOFF, "init", str(home)], check=True, capture_output=True)
        port = free_port()
        cfg = home / "signoff.yaml"
        cfg.write_text(
            cfg.read_text().replace("port: 8080", f"port: {port}") + "logging: {level: WARNING}\n"
        )
        token = (home / "demo-agent.token").read_text().strip()
        proc = subprocess.Popen(
            [SIGNOFF, "--config", str(cfg), "serve"],
            env={
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("SLACK_", "TEAMS_", "PAGERDUTY_"))
            },
        )
        base = f"http://127.0.0.1:{port}"
        try:
            connector = aiohttp.TCPConnector(limit=max(CONCURRENCY, 64))
            async with aiohttp.ClientSession(connector=connector) as session:
                for _ in range(300):
                    try:
                        async with session.get(base + "/healthz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.1)
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                url = base + "/v1/requests"
                for _ in range(200):  # warm-up
                    async with session.post(
                        url, data='{"tool":"a.read","arguments":{}}', headers=headers
                    ) as r:
                        await r.read()
                lat = await paced(session, url, headers)
                ms = [x * 1000 for x in lat]
                print(
                    f"auto-tier at {RATE} req/s for {SECONDS:.0f}s: n={len(ms)} "
                    f"p50={statistics.median(ms):.2f} ms p99={pct(ms, 0.99):.2f} ms "
                    f"(targets p50<=1 ms, p99<=5 ms)"
                )
                rps = await saturate(session, url, headers)
                print(
                    f"auto-tier saturation with {CONCURRENCY} concurrent clients: "
                    f"{rps:,.0f} req/s (target >= 3,000; client shares the 2 cores)"
                )
        finally:
            proc.terminate()
            proc.wait(timeout=20)


if __name__ == "__main__":
    asyncio.run(main())
