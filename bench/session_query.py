"""The one session query per evaluation (SPEC §5 Sessions), on SQLite and PostgreSQL.

Fills one session with N calls (default 10,000; four label sets, plus 10,000 calls of other
sessions and calls without a session key), then times ``SqlStore.session_calls``: the rows it
returns stay one per label set whatever N is, and the time is one range scan of the partial
covering index ``ix_requests_session``. PostgreSQL is measured when ``SIGNOFF_BENCH_PG_URL``
names a database (its ``requests`` table is created by the store's migrations).

Usage: ``python bench/session_query.py [--calls N] [--samples N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from bot.domain import PolicyRef, Request, Requirement, Status, Tier, ToolCall
from bot.store import SqlStore, mapping
from bot.store.tables import REQUESTS

NOW = datetime(2026, 12, 2, tzinfo=UTC)
LABELS = (("private_data",), (), ("untrusted_content",), ("external_comms",))


def request(n: int, session: str | None) -> dict[str, object]:
    value = Request(
        id=f"{session or 'none'}-{n:09d}",
        agent_id="bench-agent",
        call=ToolCall(f"tool.{n % 7}", {"n": n}),
        tier=Tier.AUTO,
        status=Status.APPROVED,
        policy=PolicyRef("sha256:" + "0" * 64, "v1", "r"),
        requirement=Requirement(),
        created_at=NOW - timedelta(seconds=n % 3000),
        arguments_sha256="a" * 64,
        call_sha256="c" * 64,
        session=session,
        labels=LABELS[n % 4] if session else (),
    )
    return mapping.from_request(value)


async def measure(url: str, calls: int, samples: int) -> str:
    store = await SqlStore.open(url)
    try:
        rows = [request(n, "big") for n in range(calls)]
        rows += [request(n, f"other-{n % 100}") for n in range(10_000)]
        rows += [request(n, None) for n in range(10_000)]
        with store.engine.begin() as conn:
            for start in range(0, len(rows), 5_000):
                conn.execute(insert(REQUESTS), rows[start : start + 5_000])
        since = NOW - timedelta(hours=1)
        await store.session_calls("big", since)  # warm
        times = []
        for _ in range(samples):
            began = time.perf_counter()
            found = await store.session_calls("big", since)
            times.append(time.perf_counter() - began)
        tracemalloc.start()
        await store.session_calls("big", since)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert sum(row.count for row in found) == calls
        times.sort()
        p50, p99 = statistics.median(times), times[int(len(times) * 0.99) - 1]
        return (
            f"{store.engine.dialect.name}: {calls:,} calls in one session -> {len(found)} rows; "
            f"p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms; "
            f"peak Python memory {peak / 1024:.0f} KiB; load average {os.getloadavg()[0]:.1f}"
        )
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        print("session_query", await measure(url, options.calls, options.samples))
    if pg := os.environ.get("SIGNOFF_BENCH_PG_URL"):
        print("session_query", await measure(pg, options.calls, options.samples))


if __name__ == "__main__":
    asyncio.run(main())
