"""``PgWriter``: the PostgreSQL strategy of the write queue (``bot.store.batching``).

Every write that appends to the evidence log takes the ``log_head`` row lock, so concurrent
PostgreSQL transactions run one after another anyway — each paying its own round trips,
lock wait and commit (WAL flush). Instead ONE transaction at a time commits whatever queued
while the previous one ran: one log-head lock, one multi-row insert of the group's requests
and log entries (``log.Pending.insert_later``), and one commit for the whole group; one
write alone when the server is idle.

The transactions run on the event loop over psycopg 3's async driver, on the writer's own
connection (an engine of one: writes never wait behind reads for a connection, nor behind
them in a thread pool's queue). The operations are the same synchronous Core code as on
SQLite; SQLAlchemy runs them in a greenlet that awaits each statement.

A group in which one write refuses (a lost compare-and-set, a duplicate vote) or breaks a
constraint runs again with a savepoint per write, so only that write fails
(``bot.store.writer.run_transaction``). A database failure fails the whole group with
``StoreError``; nothing in it committed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Connection, exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store import log
from bot.store.batching import Queued, Settled, WriteQueue, settle
from bot.store.engine import make_async_engine, store_error


class PgWriter(WriteQueue):
    """Commits PostgreSQL writes one group at a time; ``close`` (awaited) before the
    store's engines are disposed."""

    def __init__(self, url: URL, frontier: log.Frontier, clock: Callable[[], datetime]) -> None:
        super().__init__(url, frontier, clock)
        self._engine: AsyncEngine = make_async_engine(url, pool_size=1)
        self._task: asyncio.Task[None] | None = None

    def _kick(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _in_progress(self) -> bool:
        return self._task is not None

    async def _run(self) -> None:
        try:
            while self._queue:
                group = self._take()
                settle(await self._commit_group(group))
        finally:
            self._task = None
            self._wake_if_idle()

    async def _commit_group(self, group: list[Queued]) -> Settled:
        def commit(conn: Connection) -> Settled:
            return self._commit(lambda: contextlib.nullcontext(conn), group)

        try:
            async with self._engine.connect() as conn:
                return await conn.run_sync(commit)
        except exc.SQLAlchemyError as error:  # no connection to be had
            failure = store_error(error, self._url)
            return [(future, (False, failure)) for _, future in group]

    async def _release(self) -> None:
        await self._engine.dispose()
