"""The hot reads on PostgreSQL run on the event loop, on psycopg's async driver and a pool of
``database.pool_size`` connections (``bot.store.pgreads``): they never queue behind the
reader threads, the reads of one loop turn share one round trip, a failure fails its whole
batch and nothing else, the pool has the configured size, a broken connection costs one
failed batch (``StoreError``) and is replaced, and a size out of range is refused."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from bench.serving import libpq
from bot.domain import Agent, Event, Platform
from bot.errors import ConfigError, StoreError
from bot.settings import parse_settings
from bot.store import SqlStore
from bot.store.database import MAX_POOL_SIZE
from tests.factories import STORE_T0 as T0
from tests.factories import make_request
from tests.support import terminate_and_wait

pytestmark = pytest.mark.postgres

READS_APP = "signoff-reads"


def _read_pids(pg_url: str) -> list[int]:
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (READS_APP,)
        ).fetchall()
    return [int(row[0]) for row in rows]


def _read_connections(pg_url: str) -> int:
    return len(_read_pids(pg_url))


async def _until_waiting(pg_url: str, pid: int) -> None:
    """Until backend ``pid`` waits for a lock."""
    with psycopg.connect(libpq(pg_url), autocommit=True) as conn:
        for _ in range(500):
            row = conn.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid]
            ).fetchone()
            if row is not None and row[0] == "Lock":
                return
            await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited for the lock")


async def test_hot_reads_do_not_wait_behind_the_reader_threads(pg_url: str) -> None:
    store = await SqlStore.open(pg_url, pool_size=2)
    try:
        await store.add_agent(Agent("billing-agent", "h" * 64, T0))
        await store.insert_request(make_request("req-1"), b'{"n":1}', Event.NOTIFIED)
        slow = [
            asyncio.ensure_future(
                store.read(lambda conn: conn.exec_driver_sql("SELECT pg_sleep(2)").scalar())
            )
            for _ in range(4)  # both reader threads busy, two more reads queued behind them
        ]
        await asyncio.sleep(0.1)
        found, votes, cards = await asyncio.wait_for(
            store.request_view("req-1", Platform.SLACK), 1.0
        )
        assert found is not None and found.id == "req-1" and votes == [] and cards == []
        agent = await asyncio.wait_for(store.agent_by_token_hash("h" * 64), 1.0)
        assert agent is not None and agent.id == "billing-agent"
        assert not any(read.done() for read in slow)
        await asyncio.gather(*slow)
    finally:
        await store.close()


def _checkouts(store: SqlStore) -> int:
    reads = store._pg_reads
    assert reads is not None
    return int(reads._pool.get_stats().get("requests_num", 0))


async def test_the_reads_of_one_loop_turn_share_one_connection_and_round_trip(
    pg_url: str,
) -> None:
    store = await SqlStore.open(pg_url, pool_size=2)
    try:
        await store.add_agent(Agent("billing-agent", "h" * 64, T0))
        ids = [f"req-{n}" for n in range(20)]
        for rid in ids:
            await store.insert_request(make_request(rid), b'{"n":1}', Event.NOTIFIED)
        before = _checkouts(store)
        found = await asyncio.gather(*(store.get_request(rid) for rid in ids))
        views = await asyncio.gather(*(store.request_view(rid, Platform.SLACK) for rid in ids))
        assert [r.id for r in found if r is not None] == ids
        assert [v[0].id for v in views if v[0] is not None] == ids
        assert _checkouts(store) - before == 2  # one per gather: 20 and 60 statements
        # a caller that gives up does not disturb the others of its batch
        gave_up = asyncio.ensure_future(store.get_request(ids[0]))
        others = asyncio.ensure_future(asyncio.gather(*(store.get_request(r) for r in ids[1:])))
        await asyncio.sleep(0)
        gave_up.cancel()
        assert [r.id for r in await others if r is not None] == ids[1:]
    finally:
        await store.close()


async def test_a_failed_read_fails_its_batch_and_not_the_next(pg_url: str) -> None:
    store = await SqlStore.open(pg_url, pool_size=1)
    try:
        await store.add_agent(Agent("billing-agent", "h" * 64, T0))
        await store.read(lambda conn: conn.exec_driver_sql("DROP TABLE votes CASCADE"))
        results = await asyncio.gather(
            store.votes("req-1"), store.get_agent("billing-agent"), return_exceptions=True
        )
        assert all(isinstance(r, StoreError) for r in results), results
        agent = await store.get_agent("billing-agent")  # the next turn's batch
        assert agent is not None and agent.id == "billing-agent"
    finally:
        await store.close()


async def test_a_batch_cut_short_fails_its_readers_instead_of_leaving_them_waiting(
    pg_url: str,
) -> None:
    store = await SqlStore.open(pg_url, pool_size=1)
    try:
        reads = store._pg_reads
        assert reads is not None
        read = asyncio.ensure_future(store.get_request("req-1"))
        await asyncio.sleep(0)  # the read asks
        await asyncio.sleep(0)  # its batch is started
        assert reads._running
        for task in reads._running:
            task.cancel()
        with pytest.raises(StoreError, match="interrupted"):
            await asyncio.wait_for(read, 5)
        assert await store.get_request("req-1") is None  # the next batch is served
    finally:
        await store.close()


async def test_the_read_pool_has_database_pool_size_connections(pg_url: str) -> None:
    before = _read_connections(pg_url)
    store = await SqlStore.open(pg_url, pool_size=3)
    try:
        assert _read_connections(pg_url) == before + 3
    finally:
        await store.close()
    assert _read_connections(pg_url) == before


async def test_read_connections_the_server_closed_while_idle_fail_no_read(pg_url: str) -> None:
    # a restart or failover ends every idle connection: each is seen closed before a read is
    # sent on it and dropped; the read waits for the connection the pool opens instead
    store = await SqlStore.open(pg_url, pool_size=2)
    try:
        await store.add_agent(Agent("billing-agent", "h" * 64, T0))
        assert await store.get_request("req-1") is None
        before = _read_pids(pg_url)
        assert len(before) == 2
        for pid in before:
            terminate_and_wait(pg_url, pid)
        agent = await store.get_agent("billing-agent")
        assert agent is not None and agent.id == "billing-agent"
        assert await store.get_request("req-1") is None
        assert not set(_read_pids(pg_url)) & set(before)
    finally:
        await store.close()


async def test_a_read_connection_broken_under_a_read_fails_that_read_only(pg_url: str) -> None:
    # the connection is ended after the check, with the read on it: the read fails as the
    # store unavailable (never a wrong answer), and the next read is served
    store = await SqlStore.open(pg_url, pool_size=1)
    try:
        await store.add_agent(Agent("billing-agent", "h" * 64, T0))
        (pid,) = _read_pids(pg_url)
        with psycopg.connect(libpq(pg_url)) as admin:
            admin.execute("LOCK TABLE agents IN ACCESS EXCLUSIVE MODE")  # the read waits
            read = asyncio.ensure_future(store.get_agent("billing-agent"))
            await _until_waiting(pg_url, pid)
            terminate_and_wait(pg_url, pid)
            with pytest.raises(StoreError, match="unavailable"):
                await asyncio.wait_for(read, 10)
        agent = await store.get_agent("billing-agent")
        assert agent is not None
    finally:
        await store.close()


async def test_a_pool_size_out_of_range_is_refused(pg_url: str) -> None:
    for size in (0, MAX_POOL_SIZE + 1):
        with pytest.raises(ConfigError, match=r"database\.pool_size must be from 1 to 64"):
            await SqlStore.open(pg_url, pool_size=size)
    settings = parse_settings("database: {url: 'sqlite:///x.db', pool_size: 8}\n")
    assert settings.database.pool_size == 8
