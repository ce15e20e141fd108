"""Auto-tier request over HTTP, one server process, loopback (SPEC §9).

Starts ``signoff serve`` on a fresh home, then (1) sends auto-tier requests at a fixed
1,000 req/s and reports p50/p99 latency, (2) saturates it with concurrent clients and
reports throughput. Targets: p50 ≤ 1 ms, p99 ≤ 5 ms at 1,000 req/s; ≥ 3,000 req/s.

The Python (aiohttp) client shares the machine's cores with the server and costs about as
much CPU per request as the server does, so saturation is also measured with ``wrk`` (a C
load generator: ``apt-get install wrk``) when it is installed; both numbers are printed,
each naming its client. ``BENCH_RATE``, ``BENCH_SECONDS``, ``BENCH_CONCURRENCY`` override
the defaults.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
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


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"tool":"crm.read","arguments":{"id":3}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("SIGNOFF_BENCH_TOKEN")
"""


def saturate_wrk(url: str, token: str, tmp: Path) -> str | None:
    """Saturation measured by ``wrk`` (None when it is not installed)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    script = tmp / "post.lua"
    script.write_text(WRK_SCRIPT)
    out = subprocess.run(
        [wrk, "-t1", f"-c{CONCURRENCY}", f"-d{SECONDS:.0f}s", "--latency", "-s", str(script), url],
        env={**os.environ, "SIGNOFF_BENCH_TOKEN": token},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = re.search(r"Requests/sec:\s*([\d.]+)", out)
    p50 = re.search(r"50%\s+(\S+)", out)
    p99 = re.search(r"99%\s+(\S+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if rps is None:
        return f"wrk output not understood:\n{out}"
    return (
        f"{float(rps.group(1)):,.0f} req/s (latency under saturation p50 "
        f"{p50.group(1) if p50 else '?'}, p99 {p99.group(1) if p99 else '?'}"
        f"{', NON-2xx: ' + errors.group(1) if errors else ''})"
    )


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
                    f"auto-tier saturation, python aiohttp client, {CONCURRENCY} connections: "
                    f"{rps:,.0f} req/s (target >= 3,000; the client shares the cores)"
                )
            wrk = saturate_wrk(url, token, Path(tmp))
            if wrk is None:
                print("auto-tier saturation, wrk: not installed (apt-get install wrk)")
            else:
                print(f"auto-tier saturation, wrk client, {CONCURRENCY} connections: {wrk}")
        finally:
            proc.terminate()
            proc.wait(timeout=20)


if __name__ == "__main__":
    asyncio.run(main())
