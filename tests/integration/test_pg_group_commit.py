"""PostgreSQL group commit (``bot.store.pggroup`` over ``bot.store.batching``): concurrent
writes share transactions (fewer commits than writes), one refusing write fails alone while
the rest of its group commits, the log stays contiguous and verifiable, and ``close``
commits what is queued."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection

from bench.serving import libpq
from bot.domain import Agent, Event, Status
from bot.errors import Conflict, StoreError
from bot.store import SqlStore, log
from bot.store.database import PG_POOL_SIZE
from bot.store.writer import Connect, Op, Outcome
from tests.factories import STORE_T0 as T0
from tests.factories import advance
from tests.factories import numbered_request as make_request
from tests.support import terminate_and_wait

pytestmark = pytest.mark.postgres


async def test_concurrent_writes_share_transactions_and_refusals_stay_alone(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.store import writer

    store = await SqlStore.open(pg_url)
    groups: list[int] = []
    real = writer.run_transaction

    def counting(
        connect: Connect,
        frontier: log.Frontier,
        clock: Callable[[], datetime],
        ops: list[Op[Any]],
    ) -> list[Outcome]:
        groups.append(len(ops))
        return real(connect, frontier, clock, ops)

    monkeypatch.setattr("bot.store.batching.run_transaction", counting)
    try:
        await store.add_agent(Agent("agent-1", "h" * 64, T0))
        requests = [make_request(n) for n in range(1, 101)]
        inserted = await asyncio.gather(
            *(
                store.insert_request(r, b'{"n":%d}' % i, Event.BLOCKED)
                for i, r in enumerate(requests)
            )
        )
        assert len(groups) < 100  # shared transactions
        indices = [-1 if r.last_log_index is None else r.last_log_index for r in inserted]
        assert sorted(indices) == list(range(100))
        # 50 decisions at once, one of them stale: only that one is refused
        changes = [
            dataclasses.replace(
                advance(r, status=Status.DENIED, decided_at=T0, reason="no"),
                attestation=b'{"d":%d}' % i,
                event=Event.DENIED,
            )
            for i, r in enumerate(inserted[:50])
        ]
        stale = dataclasses.replace(changes[0], attestation=b'{"stale":1}')
        results = await asyncio.gather(
            *(store.commit(c) for c in [*changes, stale]), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, Exception)]
        assert len(refused) == 1 and isinstance(refused[0], Conflict)
        assert await store.log_size() == 150
        entries = await store.log_entries(0, 150)
        assert [e.index for e in entries] == list(range(150))
        for i in range(1, 151):  # every root recomputes from the stored nodes
            await store.log_root(i)
    finally:
        await store.close()


async def test_close_commits_what_is_queued(pg_url: str) -> None:
    store = await SqlStore.open(pg_url)
    await store.add_agent(Agent("agent-1", "h" * 64, T0))

    def write(n: int) -> Op[None]:
        def op(conn: Connection, pending: log.Pending) -> None:
            pending.add(b'{"q":%d}' % n, Event.BLOCKED, None)

        return op

    writes = [asyncio.ensure_future(store.transact(write(n))) for n in range(20)]
    await asyncio.sleep(0)
    await store.close()
    await asyncio.gather(*writes)
    reopened = await SqlStore.open(pg_url)
    try:
        assert await reopened.log_size() == 20
    finally:
        await reopened.close()


async def test_writes_do_not_wait_behind_reads(pg_url: str) -> None:
    # the cause of the soak's p99: groups used to queue in the readers' FIFO thread pool
    store = await SqlStore.open(pg_url)
    try:
        await store.add_agent(Agent("agent-1", "h" * 64, T0))
        slow = [
            asyncio.ensure_future(
                store.read(lambda conn: conn.exec_driver_sql("SELECT pg_sleep(3)").scalar())
            )
            for _ in range(2 * PG_POOL_SIZE)
        ]
        await asyncio.sleep(0)  # the reads are queued first
        stored = await store.insert_request(make_request(1), b'{"w":1}', Event.BLOCKED)
        assert stored.last_log_index == 0
        assert not any(read.done() for read in slow)
        await asyncio.gather(*slow)
    finally:
        await store.close()


async def test_a_duplicate_in_a_group_is_refused_alone(pg_url: str) -> None:
    # the group's rows and its COMMIT go out together (pipeline mode): the broken
    # constraint surfaces at the COMMIT, and the group runs again write by write
    store = await SqlStore.open(pg_url)
    try:
        await store.add_agent(Agent("agent-1", "h" * 64, T0))
        one, two, three = make_request(1), make_request(2), make_request(3)
        results = await asyncio.gather(
            *(
                store.insert_request(r, b'{"i":%d}' % i, Event.BLOCKED)
                for i, r in enumerate([one, two, one, three])
            ),
            return_exceptions=True,
        )
        assert [type(r).__name__ for r in results] == [
            "Request",
            "Request",
            "Conflict",
            "Request",
        ], results
        assert [e.index for e in await store.log_entries(0, 10)] == [0, 1, 2]
        await store.log_root(3)
        after = await store.insert_request(make_request(4), b'{"i":9}', Event.BLOCKED)
        assert after.last_log_index == 3  # the writer's connection is fine afterwards
    finally:
        await store.close()


async def test_a_read_opens_no_transaction_on_postgresql(pg_url: str) -> None:
    """A read is one round trip per statement: no BEGIN before it, no COMMIT after (under
    READ COMMITTED each statement has its own snapshot either way)."""
    store = await SqlStore.open(pg_url)
    try:

        def status(conn: Connection) -> tuple[bool, str]:
            conn.exec_driver_sql("SELECT 1").scalar_one()
            raw = conn.connection.dbapi_connection
            assert raw is not None
            return bool(raw.autocommit), raw.info.transaction_status.name

        assert await store.read(status) == (True, "IDLE")  # not INTRANS: nothing to commit
        await store.add_agent(Agent("agent-1", "h" * 64, T0))  # writes still transact
        assert (await store.get_agent("agent-1")) is not None
    finally:
        await store.close()


async def test_a_connection_lost_before_the_commit_is_read_is_store_unavailable(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL stopped while a write's last statements and COMMIT were in a pipeline:
    # psycopg raised at the pipeline's end, past SQLAlchemy, and the HTTP API answered 500
    from bot.store import pipeline

    real = pipeline.pipelined
    killed: list[int] = []

    @contextlib.contextmanager
    def cut_off(conn: Connection) -> Iterator[None]:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with real(conn):
            yield  # the rows and the COMMIT are queued, not yet synced
            if not killed:
                assert isinstance(pid, int)
                with psycopg.connect(libpq(pg_url), autocommit=True) as other:
                    other.execute("SELECT pg_terminate_backend(%s)", [pid])
                killed.append(pid)

    store = await SqlStore.open(pg_url)
    try:
        monkeypatch.setattr(pipeline, "pipelined", cut_off)
        with pytest.raises(StoreError, match="is unavailable"):
            await store.add_agent(Agent("agent-1", "h" * 64, T0))
        assert killed
        # the broken connection is not handed out again: the next write commits (the first
        # one's COMMIT may have reached the server before the connection went: unknown)
        await store.add_agent(Agent("agent-2", "i" * 64, T0))
        assert "agent-2" in [a.id for a in await store.list_agents()]
    finally:
        await store.close()


@contextlib.contextmanager
def counted_lock_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Each read of the append lock before a flush (``log._LOCK``), as the size it read."""
    reads: list[int] = []
    real = log._LOCK.scalar

    def counting(conn: Connection, values: dict[str, Any] | None = None) -> Any:
        size = real(conn, values)
        reads.append(int(size))
        return size

    monkeypatch.setattr(log._LOCK, "scalar", counting)
    yield reads


async def test_a_lone_insert_assumes_the_size_it_committed_and_another_writer_is_noticed(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a write that only queues rows numbers its leaf from the size this process committed
    # last (no lock round trip before its flush); a size another process moved on is caught
    # by the checked lock in the flush, and the write runs again the usual way
    store, other = await SqlStore.open(pg_url), await SqlStore.open(pg_url)
    try:
        await store.add_agent(Agent("agent-1", "h" * 64, T0))
        with counted_lock_reads(monkeypatch) as reads:
            first = await store.insert_request(make_request(1), b'{"n":1}', Event.BLOCKED)
            assert reads == [0]  # nothing cached yet: the lock is read
            for n in (2, 3):
                await store.insert_request(make_request(n), b'{"n":%d}' % n, Event.BLOCKED)
            assert reads == [0]  # assumed: 1, then 2
            await other.insert_request(make_request(4), b'{"n":4}', Event.BLOCKED)
            assert reads == [0, 3]
            moved = await store.insert_request(make_request(5), b'{"n":5}', Event.BLOCKED)
            assert reads == [0, 3, 4]  # the assumed 3 was refused: read again, under the lock
            paused = await store.insert_request(make_request(6), b'{"n":6}', Event.BLOCKED)
            assert reads == [0, 3, 4, 5]  # another writer is about: no assuming for a while
        assert (first.last_log_index, moved.last_log_index, paused.last_log_index) == (0, 4, 5)
        entries = await store.log_entries(0, 6)
        assert [e.index for e in entries] == list(range(6))
        assert [e.request_id for e in entries] == [f"req-{n}" for n in range(1, 7)]
        for size in range(1, 7):
            assert await store.log_root(size) == await other.log_root(size)
    finally:
        await store.close()
        await other.close()


async def test_an_assumed_size_beyond_the_log_is_refused_and_leaves_no_gap(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the database went back under a running process (restored from a backup): the size it
    # cached is past the log's end; appending there would leave a gap in the indices
    store = await SqlStore.open(pg_url)
    try:
        await store.add_agent(Agent("agent-1", "h" * 64, T0))
        for n in (1, 2, 3):
            await store.insert_request(make_request(n), b'{"n":%d}' % n, Event.BLOCKED)
        with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
            conn.execute("DELETE FROM log_entries WHERE idx >= 1")
            conn.execute("DELETE FROM log_nodes WHERE NOT (level = 0 AND idx = 0)")
            conn.execute("UPDATE log_head SET size = 1")
        with counted_lock_reads(monkeypatch) as reads:
            again = await store.insert_request(make_request(4), b'{"n":4}', Event.BLOCKED)
        assert reads == [1]
        assert again.last_log_index == 1
        assert await store.log_size() == 2
        assert [e.request_id for e in await store.log_entries(0, 2)] == ["req-1", "req-4"]
        await store.log_root(2)
    finally:
        await store.close()


def _writer_connections(pg_url: str, name: str = "signoff-writer") -> list[int]:
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [name]
        ).fetchall()
    return [int(row[0]) for row in rows]


async def test_a_lone_write_that_only_queues_rows_commits_from_the_event_loop(
    pg_url: str,
) -> None:
    # no hand-off to the writer's thread: the op runs, and the rows go out, on the loop
    store = await SqlStore.open(pg_url)
    threads: list[int] = []

    def queue(conn: Connection, pending: log.Pending) -> int:
        threads.append(threading.get_ident())
        return pending.add(b'{"q":%d}' % len(threads), Event.BLOCKED, None)

    def touches(conn: Connection, pending: log.Pending) -> int:
        threads.append(threading.get_ident())
        conn.exec_driver_sql("SELECT 1")  # said to only queue, but reads
        return pending.add(b'{"t":1}', Event.BLOCKED, None)

    try:
        assert await store.transact(queue, queues_only=True) == 0  # nothing cached: thread
        assert await store.transact(queue, queues_only=True) == 1
        assert await store.transact(queue, queues_only=True) == 2
        loop = threading.get_ident()
        assert threads[0] != loop and threads[1:] == [loop, loop]
        assert len(_writer_connections(pg_url)) == 1  # the loop's own connection
        # an op that uses the connection after all is refused on the loop and runs on the
        # thread, where it works
        threads.clear()
        assert await store.transact(touches, queues_only=True) == 3
        assert threads[0] == loop and threads[1] != loop
        assert [e.index for e in await store.log_entries(0, 4)] == [0, 1, 2, 3]
        await store.log_root(4)
    finally:
        await store.close()
    assert _writer_connections(pg_url) == []  # closed with the store


@contextlib.asynccontextmanager
async def loop_connection_ended(pg_url: str) -> AsyncIterator[tuple[SqlStore, int]]:
    """A store whose writer committed two entries from the event loop, then had that loop
    connection ended by the server (as a restart or failover ends it); yields the store and
    the ended backend's pid."""
    store = await SqlStore.open(pg_url)
    try:
        await store.add_agent(Agent("agent-1", "h" * 64, T0))
        for n in (1, 2):
            await store.insert_request(make_request(n), b'{"n":%d}' % n, Event.BLOCKED)
        (pid,) = _writer_connections(pg_url)
        terminate_and_wait(pg_url, pid)
        yield store, pid
    finally:
        await store.close()


async def test_a_loop_connection_the_server_closed_while_idle_is_replaced_before_a_write(
    pg_url: str,
) -> None:
    # a restart or failover ends every idle connection: the loop's is seen closed before the
    # next group is sent on it, so that write commits on a new connection instead of failing
    # as "unknown outcome" (a connection lost with the COMMIT on its way: the test below)
    async with loop_connection_ended(pg_url) as (store, pid):
        third = await store.insert_request(make_request(3), b'{"n":3}', Event.BLOCKED)
        assert third.last_log_index == 2
        assert [p for p in _writer_connections(pg_url) if p != pid]  # a new one, on the loop
        assert [e.request_id for e in await store.log_entries(0, 3)] == ["req-1", "req-2", "req-3"]
        await store.log_root(3)


async def test_a_loop_connection_lost_unseen_fails_its_write_and_the_next_connects_again(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the connection ends between the idle check and the write (the check sees nothing): with
    # the COMMIT sent, whether it committed is unknown, so the write is not tried again and
    # fails as the store unavailable; the next one commits on a new connection
    from bot.store import pgasync

    async with loop_connection_ended(pg_url) as (store, _):
        monkeypatch.setattr(pgasync, "closed_while_idle", lambda fileno: False)
        with pytest.raises(StoreError, match="is unavailable"):
            await store.insert_request(make_request(3), b'{"n":3}', Event.BLOCKED)
        fourth = await store.insert_request(make_request(4), b'{"n":4}', Event.BLOCKED)
        assert fourth.last_log_index == 2  # the lost write never reached the server
        assert [e.request_id for e in await store.log_entries(0, 3)] == ["req-1", "req-2", "req-4"]


async def test_a_thread_connection_the_server_closed_while_idle_is_replaced_at_checkout(
    pg_url: str,
) -> None:
    # the writer's thread takes its connection from SQLAlchemy's pool, which checks it out
    # only if the server has not closed it
    store = await SqlStore.open(pg_url)
    try:
        await store.add_agent(Agent("agent-1", "h" * 64, T0))  # on the thread
        before = set(_writer_connections(pg_url, "signoff-writer-thread"))
        assert len(before) == 1
        for pid in before:
            terminate_and_wait(pg_url, pid)
        await store.add_agent(Agent("agent-2", "i" * 64, T0))
        assert {a.id for a in await store.list_agents()} == {"agent-1", "agent-2"}
        assert not set(_writer_connections(pg_url, "signoff-writer-thread")) & before
    finally:
        await store.close()
