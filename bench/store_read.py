"""CPU and wall time of one store read (``SqlStore.get_request``: the read every long-poll,
cancel and decision makes), on SQLite and on PostgreSQL, from asyncio as the server calls it.

Reports per read: the process's CPU (every thread: the event loop's side, on SQLite the hop
to the store thread, and the query), the store thread's own CPU inside the read (SQLite; on
PostgreSQL the read runs on the event loop, on psycopg's async driver, and no store thread
takes part), and the wall time; then, on PostgreSQL, the same query run directly on a sync
psycopg cursor in the same thread, which is the floor.
``SIGNOFF_BENCH_READS`` sets the count (default 3,000); PostgreSQL as for ``soak.py``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from bench.requests import NOW, auto_request
from bench.serving import libpq, pg_admin_url, scratch_database
from bot.domain import Agent
from bot.store import SqlStore

READS = int(os.environ.get("SIGNOFF_BENCH_READS", "3000"))


async def measure(name: str, url: str) -> None:
    store = await SqlStore.open(url)
    try:
        await store.add_agent(Agent("bench-agent", "h" * 64, NOW))
        request = auto_request(1)
        await store.insert_request(request)
        inside = [0.0]
        real = store._in_read

        def timed(fn: Any) -> Any:
            started = time.thread_time()
            try:
                return real(fn)
            finally:
                inside[0] += time.thread_time() - started

        store._in_read = timed  # type: ignore[method-assign]
        for _ in range(READS // 10):  # warm-up
            await store.get_request(request.id)
        inside[0] = 0.0
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(READS):
            await store.get_request(request.id)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(
            f"store read {name}: {READS} x get_request: CPU {cpu / READS * 1e3:.3f} ms/read "
            f"(store thread inside the read {inside[0] / READS * 1e3:.3f} ms), "
            f"wall {wall / READS * 1e3:.3f} ms/read"
        )
    finally:
        await store.close()
    if name == "PostgreSQL":
        with psycopg.connect(libpq(url)) as conn:
            sql = "SELECT * FROM requests WHERE id = %s"
            for _ in range(READS // 10):
                conn.execute(sql, [request.id]).fetchone()
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(READS):
                conn.execute(sql, [request.id]).fetchone()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(
            f"store read PostgreSQL floor: the query on the psycopg cursor, same thread: "
            f"CPU {cpu / READS * 1e3:.3f} ms/read, wall {wall / READS * 1e3:.3f} ms/read; "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )


async def main() -> None:
    pg_admin_url("store_read")
    with tempfile.TemporaryDirectory() as tmp:
        await measure("SQLite", f"sqlite:///{Path(tmp) / 'signoff.db'}")
    with scratch_database("store_read") as url:
        await measure("PostgreSQL", url)


if __name__ == "__main__":
    asyncio.run(main())
