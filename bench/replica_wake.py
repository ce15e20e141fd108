"""Decision on replica B → a long-poll held by replica A returns (SPEC §9: p50 ≤ 20 ms,
p99 ≤ 100 ms on PostgreSQL).

Two real ``signoff serve`` processes share one fresh PostgreSQL database
(``SIGNOFF_BENCH_PG_URL``, else ``SIGNOFF_TEST_PG_URL``, which ``make bench`` sets to a
throwaway cluster). Each
round submits a confirm-tier request to A, holds ``GET /v1/requests/{id}?wait=30`` on A, then
records the approval through B's console (a logged-in HTTP form post) and times, from the
moment the decision is sent to B, until A's long-poll returns. That includes B's whole
handling of the console form (session, CSRF, the decide use case and its commit), so it is
an upper bound on the wake-up itself; the figure after B's answer is printed too.

Also prints the machine's load average: the box is shared, and the tail moves with it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.serving import (
    add_agent,
    add_user,
    console_session,
    free_port,
    scratch_database,
    serve,
    wait_ready,
    write_home,
)
from bench.stats import percentile

ROUNDS = int(os.environ.get("SIGNOFF_BENCH_ROUNDS", "200"))
PASSWORD = "bench password 123"


async def run(root: Path, database_url: str) -> tuple[list[float], list[float]]:
    port_a, port_b = free_port(), free_port()
    config_a = write_home(
        root, database_url=database_url, port=port_a, extra="logging: {level: WARNING}\n"
    )
    config_b = root / "signoff-b.yaml"
    config_b.write_text(config_a.read_text().replace(str(port_a), str(port_b)))
    token = add_agent(config_a)
    add_user(config_a, "alice", PASSWORD)
    procs = [serve(c) for c in (config_a, config_b)]
    a, b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    headers = {"Authorization": f"Bearer {token.strip()}"}
    sent: list[float] = []
    acked: list[float] = []
    try:
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, a, procs[0], timeout=30)
            await wait_ready(http, b, procs[1], timeout=30)
            cookie, csrf = await console_session(http, b, "alice", PASSWORD)
            for i in range(ROUNDS):
                body = {"tool": "payments.transfer", "arguments": {"amount": 20000 + i}}
                async with http.post(a + "/v1/requests", json=body, headers=headers) as r:
                    assert r.status == 201, await r.text()
                    rid = (await r.json())["id"]
                returned: list[float] = []

                async def poll(rid: str = rid, returned: list[float] = returned) -> str:
                    url = f"{a}/v1/requests/{rid}?wait=30"
                    async with http.get(url, headers=headers) as resp:
                        data = await resp.json()
                    returned.append(time.perf_counter())
                    return str(data["status"])

                task = asyncio.ensure_future(poll())
                await asyncio.sleep(0.03)  # the long-poll is held by A
                start = time.perf_counter()
                async with http.post(
                    f"{b}/console/requests/{rid}/decide",
                    data={"csrf_token": csrf, "verdict": "approve", "reason": "ok"},
                    headers=cookie,
                    allow_redirects=False,
                ) as resp:
                    assert resp.status == 303, await resp.text()
                ack = time.perf_counter()
                assert await task == "approved"
                sent.append((returned[0] - start) * 1000)
                acked.append(max(0.0, returned[0] - ack) * 1000)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return sent, acked


async def main() -> None:
    with scratch_database("replica_wake") as url, tempfile.TemporaryDirectory() as tmp:
        sent, acked = await run(Path(tmp), url)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"decision on replica B -> long-poll on replica A returns ({ROUNDS} rounds, PostgreSQL, "
        f"2 x signoff serve): p50={percentile(sent, 0.5):.1f} ms "
        f"p99={percentile(sent, 0.99):.1f} ms "
        f"max={max(sent):.1f} ms from the decision sent to B (target p50 <= 20 ms, "
        f"p99 <= 100 ms); after B's answer p50={percentile(acked, 0.5):.1f} ms "
        f"p99={percentile(acked, 0.99):.1f} ms; load average {load}"
    )


if __name__ == "__main__":
    asyncio.run(main())
