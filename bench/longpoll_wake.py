"""Decision → a waiting long-poll returns, in one process (SPEC §9: p50 ≤ 10 ms).

Builds the real runtime on a fresh SQLite home, serves the agent API on an ephemeral port,
and for each round: submits a confirm-tier request, starts ``GET /v1/requests/{id}?wait=30``,
then decides through the ``decide`` use case and times how long the long-poll takes to return.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.main import build
from bench.serving import write_home
from bot.domain import Approver, Platform, Verdict
from bot.settings import load_settings

ROUNDS = 200
ALICE = Approver(Platform.CONSOLE, "console", "alice", via="console_login")


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runtime = await build(load_settings(write_home(Path(tmp))), adapters=False)
        runner = web.AppRunner(runtime.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}"
        _, token = await runtime.gate.register_agent("bench-agent")
        headers = {"Authorization": f"Bearer {token}"}
        waits: list[float] = []
        async with aiohttp.ClientSession() as http:
            for i in range(ROUNDS):
                body = {"tool": "payments.transfer", "arguments": {"amount": 20000 + i}}
                async with http.post(base + "/v1/requests", json=body, headers=headers) as r:
                    rid = (await r.json())["id"]
                poll = asyncio.create_task(
                    http.get(f"{base}/v1/requests/{rid}?wait=30", headers=headers)
                )
                while not runtime.fanout.waiters._events.get(rid):  # the poll is waiting
                    await asyncio.sleep(0.001)
                start = time.perf_counter()
                await runtime.gate.decide(
                    rid, ALICE, Verdict.APPROVE, "ok", memberships={"finance"}
                )
                resp = await poll
                data = await resp.json()
                waits.append((time.perf_counter() - start) * 1000)
                assert data["status"] == "approved"
                resp.release()
        await runner.cleanup()
        await runtime.gate.drain()
        await runtime.store.close()
    waits.sort()
    print(
        f"decision -> long-poll returns ({ROUNDS} rounds, one process): "
        f"p50={statistics.median(waits):.2f} ms p99={waits[int(len(waits) * 0.99) - 1]:.2f} ms "
        "(target p50 <= 10 ms; includes the decide use case's own commit)"
    )


if __name__ == "__main__":
    asyncio.run(main())
