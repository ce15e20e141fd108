"""The change feed (``bot.store.changes``): a commit by one store reaches another store's
feed on the same database — SQLite and PostgreSQL; a lost LISTEN connection is reported
down, comes back by itself, and is reported live again; long-poll waiters registered before
their read never miss a wake-up."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable

import psycopg
import pytest
import pytest_asyncio

from bench.serving import libpq
from bot.domain import Agent, Event, Status
from bot.store import SqlStore
from bot.store.changes import SQLITE_IDLE_S
from bot.waiters import Waiters
from tests.factories import STORE_T0 as T0
from tests.factories import advance
from tests.factories import numbered_request as make_request
from tests.support import until


class Feed:
    def __init__(self) -> None:
        self.changed: asyncio.Queue[str] = asyncio.Queue()
        self.live: list[bool] = []
        self.interested = True
        self.declined = 0  # times the feed asked and heard that nobody waits

    def wants(self) -> bool:
        if not self.interested:
            self.declined += 1
        return self.interested

    def on_change(self, request_id: str) -> None:
        self.changed.put_nowait(request_id)

    def on_live(self, live: bool) -> None:
        self.live.append(live)

    async def until_live(self, count: int = 1) -> None:
        async with asyncio.timeout(20):
            while self.live.count(True) < count or not self.live[-1]:
                await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def watching(store: SqlStore) -> AsyncIterator[Feed]:
    """``store``'s change feed, live (SQLite: live at once, then, someone waiting, a baseline
    of the log and a resync), until the block ends."""
    feed = Feed()
    task = asyncio.ensure_future(store.watch_changes(feed.on_change, feed.on_live, feed.wants))
    try:
        await feed.until_live(2 if "sqlite" in str(store.engine.url) else 1)
        yield feed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest_asyncio.fixture
async def two(store_url: str) -> AsyncIterator[tuple[SqlStore, SqlStore]]:
    one, other = await SqlStore.open(store_url), await SqlStore.open(store_url)
    await one.add_agent(Agent("agent-1", "h" * 64, T0))
    try:
        yield one, other
    finally:
        await one.close()
        await other.close()


async def decide(store: SqlStore, number: int) -> str:
    request = await store.insert_request(make_request(number))
    change = advance(request, status=Status.DENIED, decided_at=T0, reason="no")
    await store.commit(
        dataclasses.replace(change, attestation=b'{"n":%d}' % number, event=Event.DENIED)
    )
    return request.id


async def test_a_commit_in_one_store_reaches_the_others_feed(
    two: tuple[SqlStore, SqlStore],
) -> None:
    listening, writing = two
    sqlite = "sqlite" in str(listening.engine.url)
    async with watching(listening) as feed:
        rid = await decide(writing, 1)
        async with asyncio.timeout(5):
            assert await feed.changed.get() == rid
        # nobody waits: the SQLite feed reads nothing; when waiting starts again it has
        # every waiter re-read once (reported live again). PostgreSQL notifies throughout.
        feed.interested = False
        if sqlite:  # the poll has seen that nobody waits before the next commit
            await until(lambda: feed.declined > 0, what="the SQLite poll to see no waiter")
        await decide(writing, 2)
        lives = feed.live.count(True)
        feed.interested = True
        if sqlite:
            await feed.until_live(lives + 1)
        rid = await decide(writing, 3)
        async with asyncio.timeout(5):
            while (got := await feed.changed.get()) != rid:
                assert got == "req-2"
    # reported down when stopped (the SQLite poll thread reports it as it ends, after the task)
    await until(lambda: feed.live[-1] is False, what="the feed to report itself down")


async def test_a_groups_changes_are_each_announced_once_and_a_refused_one_not(
    two: tuple[SqlStore, SqlStore],
) -> None:
    # commits sharing one write transaction (PostgreSQL: their notifications go out in one
    # statement with the rows); one of them stale, so the group runs again op by op
    listening, writing = two
    async with watching(listening) as feed:
        for attempt in ("together", "with a stale one"):
            first = 20 if attempt == "together" else 40
            stored = [
                await writing.insert_request(make_request(n)) for n in range(first, first + 5)
            ]
            moves = [
                dataclasses.replace(
                    advance(r, status=Status.DENIED, decided_at=T0, reason="no"),
                    attestation=b'{"n":"%s"}' % r.id.encode(),
                    event=Event.DENIED,
                )
                for r in stored
            ]
            if attempt != "together":
                moves.append(moves[2])  # the same change again: stale in the same group
            results = await asyncio.gather(
                *(writing.commit(m) for m in moves), return_exceptions=True
            )
            refused = [r for r in results if isinstance(r, Exception)]
            assert len(refused) == (0 if attempt == "together" else 1), results
            heard: list[str] = []
            async with asyncio.timeout(5):
                while len(heard) < len(stored):
                    heard.append(await feed.changed.get())
            await asyncio.sleep(0.3)  # nothing more comes
            while not feed.changed.empty():
                heard.append(feed.changed.get_nowait())
            assert sorted(heard) == sorted(r.id for r in stored), attempt


@pytest.mark.postgres
async def test_a_lost_listen_connection_reconnects_and_reports_the_gap(
    pg_url: str,
) -> None:
    store, writer = await SqlStore.open(pg_url), await SqlStore.open(pg_url)
    await store.add_agent(Agent("agent-1", "h" * 64, T0))
    feed = Feed()
    task = asyncio.ensure_future(store.watch_changes(feed.on_change, feed.on_live, lambda: True))
    try:
        await feed.until_live()
        with psycopg.connect(libpq(pg_url), autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query = 'LISTEN signoff_changes' AND pid <> pg_backend_pid()"
            ).fetchall()
        assert killed
        await feed.until_live(count=2)
        assert feed.live == [True, False, True]
        rid = await decide(writer, 1)
        async with asyncio.timeout(5):
            assert await feed.changed.get() == rid
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
        await writer.close()


async def test_a_waiter_registered_before_its_read_sees_an_early_wake() -> None:
    waiters = Waiters()
    with waiters.watch("r1") as watch:
        assert "r1" in waiters and len(waiters) == 1
        waiters.wake("r1")  # between the caller's read and its wait
        assert await watch.wait(5) is True
        # re-armed: a second wake-up is seen too, a quiet period times out
        assert await watch.wait(0.01) is False
        waiters.wake("r1")
        assert await watch.wait(5) is True
    assert len(waiters) == 0 and "r1" not in waiters


async def test_wake_all_wakes_every_waiter() -> None:
    waiters = Waiters()
    with waiters.watch("a") as a, waiters.watch("b") as b:
        waiters.wake_all()
        assert await a.wait(5) and await b.wait(5)


async def test_the_sqlite_poll_sleeps_while_nobody_waits_and_wakes_when_waiting_begins(
    sqlite_url: str,
) -> None:
    # the fanout's nudge wired in: no look every 5 ms while the auto tier runs unwatched,
    # and a long-poll that begins is served at once, not after the idle sleep
    listening, writing = await SqlStore.open(sqlite_url), await SqlStore.open(sqlite_url)
    await writing.add_agent(Agent("agent-1", "h" * 64, T0))
    waiters = Waiters()
    feed = Feed()
    feed.interested = False

    def subscribe(wake: Callable[[], None]) -> None:
        waiters.on_first_watch = wake

    task = asyncio.ensure_future(
        listening.watch_changes(feed.on_change, feed.on_live, feed.wants, subscribe)
    )
    try:
        await feed.until_live()
        await asyncio.sleep(0.3)
        # one look when the poll began (and maybe one more): not sixty
        assert feed.declined <= 2
        lives = feed.live.count(True)
        started = asyncio.get_running_loop().time()
        feed.interested = True
        with waiters.watch("req-1"):  # waiting begins: the nudge
            await feed.until_live(lives + 1)  # the baseline taken, every waiter re-reads
            assert asyncio.get_running_loop().time() - started < SQLITE_IDLE_S / 2
            rid = await decide(writing, 1)
            async with asyncio.timeout(5):
                assert await feed.changed.get() == rid
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await listening.close()
        await writing.close()
