"""SQLite group commit on the event loop (``bot.store.group``), on a real SQLite file:
writes run on the loop's thread, a write lock held by another process never stalls the
loop, WAL checkpoints happen off the loop, and closing the store commits what is queued."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection

from bot.domain import Event
from bot.errors import StoreError
from bot.store import SqlStore, engine, group, log
from tests.factories import envelope
from tests.factories import numbered_request as make_request
from tests.support import until


async def test_writes_commit_on_the_event_loops_thread(sqlite_url: str) -> None:
    store = await SqlStore.open(sqlite_url)
    seen: list[int] = []

    def op(conn: Connection, _: log.Pending) -> None:
        seen.append(threading.get_ident())

    try:
        await store.transact(op)
        stored = await store.insert_request(make_request(1), envelope(1), Event.NOTIFIED)
    finally:
        await store.close()
    assert seen == [threading.get_ident()]
    assert stored.last_log_index == 0


async def test_an_in_memory_database_writes_on_the_store_thread() -> None:
    # one shared connection: its writes must stay serialised with the thread's reads
    store = await SqlStore.open("sqlite://")
    seen: list[int] = []

    def op(conn: Connection, _: log.Pending) -> None:
        seen.append(threading.get_ident())

    try:
        await store.transact(op)
        await store.insert_request(make_request(1), envelope(1), Event.NOTIFIED)
        assert (await store.get_request("req-1")) is not None
    finally:
        await store.close()
    assert seen and seen[0] != threading.get_ident()


async def test_a_lock_held_by_another_process_does_not_stall_the_loop(
    sqlite_url: str, tmp_path: Path
) -> None:
    store = await SqlStore.open(sqlite_url)
    await store.insert_request(make_request(0), envelope(0), Event.NOTIFIED)
    assert isinstance(store._writes, group.SqliteWriter)
    loop_conn = store._writes._conn
    assert loop_conn is not None
    other = sqlite3.connect(tmp_path / "signoff.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # what a CLI command's write transaction holds
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        write = asyncio.create_task(
            store.insert_request(make_request(1), envelope(1), Event.NOTIFIED)
        )
        await asyncio.sleep(0.5)
        assert not write.done()  # still waiting for the lock, off the loop
        assert ticks >= 20  # the loop kept running meanwhile (a blocked loop would give 0)
        more = asyncio.create_task(
            store.insert_request(make_request(2), envelope(2), Event.NOTIFIED)
        )
        await asyncio.sleep(0.05)
        other.execute("COMMIT")
        first, second = await asyncio.wait_for(asyncio.gather(write, more), 5)
        ticker.cancel()
        assert {first.last_log_index, second.last_log_index} == {1, 2}
        # back on the loop, on the same connection, once the worker has caught up
        third = await store.insert_request(make_request(3), envelope(3), Event.NOTIFIED)
        assert third.last_log_index == 3
        assert store._writes._conn is loop_conn
        assert await store.log_size() == 4
    finally:
        other.close()
        await store.close()


async def test_a_lock_held_briefly_by_another_process_is_waited_for_on_the_loop(
    sqlite_url: str, tmp_path: Path
) -> None:
    # a second worker's commit: the loop tries again shortly instead of handing the group
    # (and the ones after it) to the worker thread
    store = await SqlStore.open(sqlite_url)
    await store.insert_request(make_request(0), envelope(0), Event.NOTIFIED)
    threads: list[int] = []

    def op(conn: Connection, _: log.Pending) -> None:
        threads.append(threading.get_ident())

    writes = store._writes
    assert isinstance(writes, group.SqliteWriter)
    other = sqlite3.connect(tmp_path / "signoff.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        first = asyncio.create_task(store.transact(op))
        await until(lambda: writes._lock_waits >= 1, what="a try that found the lock held")
        assert not first.done()
        second = asyncio.create_task(store.transact(op))  # joins the group being retried
        await asyncio.sleep(0)
        other.execute("COMMIT")
        await asyncio.wait_for(asyncio.gather(first, second), 5)
        assert threads == [threading.get_ident()] * 2
        assert writes._commits == 2  # the first insert, then both ops in one group
        assert writes._lock_waits == 0
    finally:
        other.close()
        await store.close()


async def test_a_lock_held_past_the_busy_timeout_fails_the_write_and_loses_nothing(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "SQLITE_BUSY_TIMEOUT_MS", 200)  # instead of 5 s
    store = await SqlStore.open(sqlite_url)
    other = sqlite3.connect(tmp_path / "signoff.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="database is locked"):
            await store.insert_request(make_request(1), envelope(1), Event.NOTIFIED)
        other.execute("COMMIT")
        assert await store.get_request("req-1") is None
        stored = await store.insert_request(make_request(1), envelope(1), Event.NOTIFIED)
        assert stored.last_log_index == 0
    finally:
        other.close()
        await store.close()


async def test_checkpoints_copy_the_wal_into_the_database_off_the_loop(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group, "CHECKPOINT_EVERY", 8)
    monkeypatch.setattr(engine, "SQLITE_WAL_LIMIT_BYTES", -1)  # no truncation: see the size
    path = tmp_path / "signoff.db"
    store = await SqlStore.open(sqlite_url)
    checkpoints: list[int] = []
    real = group.SqliteWriter._checkpoint

    def spy(self: group.SqliteWriter, restart: bool = False) -> None:
        checkpoints.append(threading.get_ident())
        real(self, restart)

    monkeypatch.setattr(group.SqliteWriter, "_checkpoint", spy)
    try:
        before = path.stat().st_size
        for n in range(40):  # one commit each: 40 commits, 5 checkpoints due
            await store.insert_request(make_request(n), envelope(n), Event.NOTIFIED)
        deadline = time.monotonic() + 5
        while path.stat().st_size == before and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert path.stat().st_size > before  # pages reached the database file
        assert checkpoints and threading.get_ident() not in checkpoints
        # steady writes: each checkpoint copies the whole WAL (writes wait for it), so the
        # WAL starts over instead of growing (400 commits would be ~16 MB of frames)
        for n in range(40, 440):
            await store.insert_request(make_request(n), envelope(n), Event.NOTIFIED)
        assert (tmp_path / "signoff.db-wal").stat().st_size < 2 * 1024 * 1024
    finally:
        await store.close()
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*) FROM requests").fetchone() == (440,)


async def test_writes_wait_for_a_checkpoint_that_fell_behind(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a starved checkpoint thread must not let the WAL grow without end: once the first
    # pass is CHECKPOINT_LAG intervals behind, the loop's writes wait for it to finish
    monkeypatch.setattr(group, "CHECKPOINT_EVERY", 4)
    release = threading.Event()
    real = group.SqliteWriter._checkpoint

    def stalled(self: group.SqliteWriter, restart: bool = False) -> None:
        if not restart:
            release.wait(10)
        real(self, restart)

    monkeypatch.setattr(group.SqliteWriter, "_checkpoint", stalled)
    store = await SqlStore.open(sqlite_url)
    done: list[int] = []

    async def write(n: int) -> None:
        await store.insert_request(make_request(n), envelope(n), Event.NOTIFIED)
        done.append(n)

    try:
        writer = asyncio.create_task(_one_after_another(write, 30))
        bound = 4 + group.CHECKPOINT_LAG * 4  # commits before the checkpoint + its lag
        await until(lambda: len(done) >= bound)
        for _ in range(20):  # the loop keeps running; the writes stay held
            await asyncio.sleep(0.01)
        assert len(done) == bound
        release.set()
        await asyncio.wait_for(writer, 10)
        assert len(done) == 30
    finally:
        release.set()
        await store.close()


async def _one_after_another(write: Callable[[int], Awaitable[None]], count: int) -> None:
    for n in range(count):
        await write(n)


async def test_close_commits_what_is_queued(sqlite_url: str) -> None:
    store = await SqlStore.open(sqlite_url)
    writes = [
        asyncio.create_task(store.insert_request(make_request(n), envelope(n), Event.NOTIFIED))
        for n in range(20)
    ]
    await asyncio.sleep(0)  # queued, not yet committed
    await store.close()
    assert sorted(w.result().last_log_index or 0 for w in writes) == list(range(20))
    reopened = await SqlStore.open(sqlite_url)
    try:
        assert await reopened.log_size() == 20
    finally:
        await reopened.close()


def _wal_checkpoint_sequence(wal: Path) -> int:
    # WAL header (sqlite.org/fileformat2.html#walformat): bytes 12-15, big-endian, count the
    # times the WAL has started over
    return int.from_bytes(wal.read_bytes()[12:16], "big")


async def test_the_wal_starts_over_on_the_worker_thread_not_in_a_loop_commit(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the first write into a reused WAL fsyncs its header: the checkpoint's second pass
    # makes that write itself, so the loop's next commit does not wait for a disk sync
    monkeypatch.setattr(group, "CHECKPOINT_EVERY", 4)
    store = await SqlStore.open(sqlite_url)
    wal = tmp_path / "signoff.db-wal"
    try:
        for n in range(3):
            await store.insert_request(make_request(n), envelope(n), Event.NOTIFIED)
        before = _wal_checkpoint_sequence(wal)
        await store.insert_request(make_request(3), envelope(3), Event.NOTIFIED)  # 4th commit
        assert isinstance(store._writes, group.SqliteWriter)
        deadline = time.monotonic() + 5
        while store._writes._checkpointing and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert not store._writes._checkpointing
        assert _wal_checkpoint_sequence(wal) == before + 1  # started over, no loop write yet
        stored = await store.insert_request(make_request(4), envelope(4), Event.NOTIFIED)
        assert stored.last_log_index == 4
        assert _wal_checkpoint_sequence(wal) == before + 1
    finally:
        await store.close()
