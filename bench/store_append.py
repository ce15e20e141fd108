"""Benchmark the store's hot paths on SQLite (WAL) in a temporary directory.

Prints:
- decisions/s for ``insert_request`` + attestation (the auto tier), sequential and with
  concurrent callers (target: >= 5,000/s, SPEC §9 "attest + append to log"). Each decision
  is timed whole, as the gate does it: the in-toto statement built and canonicalised
  (RFC 8785), signed with Ed25519 into a DSSE envelope (``bot.evidence.statement.attest``
  with a real key ring), then appended;
- decisions/s for ``commit`` of a change with its attestation (signed the same way);
- inclusion-proof latency p50/p99 at a large log (target: <= 5 ms). The large log is built
  with direct bulk inserts of leaves and tree nodes, which is what appends would have written.

Usage: ``python bench/store_append.py [--decisions N] [--log-size N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from bench.requests import auto_request
from bot.domain import Change, Event, Request, Status
from bot.evidence import merkle
from bot.evidence.keys import KeyRing
from bot.evidence.statement import attest
from bot.store import SqlStore


def request(n: int) -> Request:
    return auto_request(n, {"customer": n, "fields": ["name", "email"]})


def filler_envelope(n: int) -> bytes:
    """A log leaf for the bulk-built proof log only (its proofs hash leaves, never verify
    signatures): about the size of a real DSSE envelope."""
    return (
        b'{"payload":"'
        + b"A" * 900
        + f'{n}","payloadType":"application/vnd.in-toto+json"}}'.encode()
    )


async def bench_inserts(
    store: SqlStore, keys: KeyRing, count: int, start: int, callers: int
) -> float:
    async def caller(k: int) -> None:
        for n in range(start + k, start + count, callers):
            made = request(n)
            signed = attest(made, Event.AUTO_ALLOWED, keys, at=made.created_at, reason=made.reason)
            await store.insert_request(made, signed, Event.AUTO_ALLOWED)

    began = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(callers)))
    return count / (time.perf_counter() - began)


async def bench_commits(
    store: SqlStore, keys: KeyRing, count: int, start: int, callers: int
) -> float:
    pending = [
        await store.insert_request(dataclasses.replace(request(n), status=Status.PENDING))
        for n in range(start, start + count)
    ]

    async def caller(k: int) -> None:
        for before in pending[k::callers]:
            after = dataclasses.replace(before, status=Status.APPROVED, version=before.version + 1)
            signed = attest(after, Event.APPROVED, keys, at=after.created_at)
            change = Change(before, after, attestation=signed, event=Event.APPROVED)
            await store.commit(change)

    began = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(callers)))
    return count / (time.perf_counter() - began)


def bulk_log(path: Path, size: int) -> None:
    """Write a log of ``size`` leaves straight into SQLite: entries, every perfect-subtree
    node, and the head, as ``size`` appends would have."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous = OFF")
    # the newest completed node of each level: exactly the left siblings an append needs
    edge: dict[int, bytes] = {}
    batch_entries: list[tuple[object, ...]] = []
    batch_nodes: list[tuple[int, int, bytes]] = []
    for index in range(size):
        body = filler_envelope(index)
        leaf = merkle.leaf_hash(body)
        for level, idx, h in merkle.completed_nodes(index, leaf, lambda lv, _ix: edge[lv]):
            edge[level] = h
            batch_nodes.append((level, idx, h))
        batch_entries.append((index, None, "auto_allowed", body, leaf, "2026-01-01 00:00:00"))
        if len(batch_entries) >= 50_000 or index == size - 1:
            db.executemany("INSERT INTO log_entries VALUES (?, ?, ?, ?, ?, ?)", batch_entries)
            db.executemany("INSERT INTO log_nodes VALUES (?, ?, ?)", batch_nodes)
            batch_entries, batch_nodes = [], []
    db.execute("UPDATE log_head SET size = ?", (size,))
    db.commit()
    db.close()


async def bench_proofs(store: SqlStore, size: int, samples: int) -> tuple[float, float]:
    import random

    rng = random.Random(6962)
    latencies = []
    leaf_root = await store.log_root(size)
    for _ in range(samples):
        index = rng.randrange(size)
        began = time.perf_counter()
        proof = await store.inclusion_proof(index, size)
        latencies.append(time.perf_counter() - began)
        if len(latencies) <= 20:  # spot-check correctness, outside the timing
            leaf = (await store.log_entries(index, index + 1))[0].leaf_hash
            merkle.verify_inclusion(leaf, index, size, proof, leaf_root)
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    return p50 * 1000, p99 * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--log-size", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=2_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = await SqlStore.open(f"sqlite:///{Path(tmp) / 'bench.db'}")
        keys = KeyRing.create(Path(tmp) / "keys")
        try:
            n = args.decisions
            await bench_inserts(store, keys, 500, 10_000_000, 1)  # warm up
            rows = []
            for callers in (1, 8, 64):
                rate = await bench_inserts(store, keys, n, callers * 10 * n, callers)
                rows.append(("insert_request + attestation", callers, rate))
            for callers in (1, 8, 64):
                rate = await bench_commits(store, keys, n // 2, callers * 10 * n + n, callers)
                rows.append(("commit + attestation", callers, rate))
        finally:
            await store.close()
        for what, callers, rate in rows:
            print(f"{what:30s} {callers:3d} callers: {rate:10,.0f} decisions/s")

        path = Path(tmp) / "proofs.db"
        store = await SqlStore.open(f"sqlite:///{path}")
        await store.close()
        began = time.perf_counter()
        bulk_log(path, args.log_size)
        built = time.perf_counter() - began
        store = await SqlStore.open(f"sqlite:///{path}")
        try:
            p50, p99 = await bench_proofs(store, args.log_size, args.samples)
        finally:
            await store.close()
        print(f"log of {args.log_size:,} entries built in {built:.1f} s")
        print(f"inclusion proof at {args.log_size:,}: p50 {p50:.3f} ms, p99 {p99:.3f} ms")


if __name__ == "__main__":
    asyncio.run(main())
