"""Wall time and CPU of one lone write through the store (``SqlStore.insert_request`` of an
auto-tier request with its attestation, one at a time, from asyncio as the server calls it),
on SQLite and on PostgreSQL: what the sequential auto tier pays for its write.

On PostgreSQL a lone write that only queues rows costs one round trip: the append lock
(checked against the log size this process committed last), the request row, the log
entry, the tree nodes, the size and the ``COMMIT`` go out in one pipeline, synced once
(``bot/store/log.py``, ``bot/store/pipeline.py``). Reports p50/p90 and the process's CPU per
write (every thread: the event loop and the writer's thread; PostgreSQL's own CPU is not
counted). ``SIGNOFF_BENCH_WRITES`` sets the count (default 3,000, after 300 not counted);
PostgreSQL as for ``soak.py``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.requests import NOW, auto_request
from bench.serving import scratch_database
from bench.stats import percentile
from bot.domain import Agent, Event
from bot.store import SqlStore

WRITES = int(os.environ.get("SIGNOFF_BENCH_WRITES", "3000"))
WARMUP = 300
ENVELOPE = b'{"payload":"' + b"e" * 880 + b'"}'  # a ~900-byte stand-in for a DSSE envelope


async def measure(name: str, url: str) -> None:
    store = await SqlStore.open(url)
    try:
        await store.add_agent(Agent("bench-agent", "h" * 64, NOW))
        latencies: list[float] = []
        cpu = 0.0
        for n in range(WARMUP + WRITES):
            if n == WARMUP:
                cpu = time.process_time()
            started = time.perf_counter()
            await store.insert_request(auto_request(n), ENVELOPE, Event.AUTO_ALLOWED)
            if n >= WARMUP:
                latencies.append(time.perf_counter() - started)
        cpu = time.process_time() - cpu
    finally:
        await store.close()
    print(
        f"{name}: one write at a time ({WRITES} writes): p50 "
        f"{percentile(latencies, 0.5) * 1000:.3f} ms, p90 {percentile(latencies, 0.9) * 1000:.3f} "
        f"ms; CPU {cpu / WRITES * 1000:.3f} ms per write"
    )


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        await measure("SQLite", f"sqlite:///{tmp}/signoff.db")
    with scratch_database("store_write") as url:
        await measure("PostgreSQL", url)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    asyncio.run(main())
