"""``PgWriter``: the PostgreSQL strategy of the write queue (``bot.store.batching``).

Every write that appends to the evidence log takes the ``log_head`` row lock, so concurrent
PostgreSQL transactions run one after another anyway — each paying its own round trips,
lock wait and commit (WAL flush). Instead ONE transaction at a time, on a store thread,
commits whatever queued while the previous one ran: one log-head lock, one multi-row insert
of the group's requests and log entries (``log.Pending.insert_later``), and one commit for
the whole group; one write alone when the server is idle.

A group in which one write refuses (a lost compare-and-set, a duplicate vote) or breaks a
constraint runs again with a savepoint per write, so only that write fails
(``bot.store.writer.run_transaction``). A database failure fails the whole group with
``StoreError``; nothing in it committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from bot.store import log
from bot.store.batching import Queued, Settled, WriteQueue, settle
from bot.store.writer import pooled


class PgWriter(WriteQueue):
    """Commits PostgreSQL writes one group at a time; ``close`` (awaited) before the engine
    is disposed."""

    def __init__(
        self,
        engine: Engine,
        url: URL,
        executor: Executor,
        frontier: log.Frontier,
        clock: Callable[[], datetime],
    ) -> None:
        super().__init__(url, frontier, clock)
        self._connect = pooled(engine)
        self._executor = executor
        self._in_flight = False

    def _kick(self) -> None:
        if not self._in_flight:
            self._next()

    def _in_progress(self) -> bool:
        return self._in_flight

    def _next(self) -> None:
        if not self._queue:
            self._wake_if_idle()
            return
        group = self._take()
        self._in_flight = True
        loop = asyncio.get_running_loop()
        try:
            done = loop.run_in_executor(self._executor, self._commit, self._connect, group)
        except RuntimeError:  # the executor is shut down
            self._in_flight = False
            self._refuse(group)
            self._next()
            return
        done.add_done_callback(lambda finished: self._finished(group, finished))

    def _finished(self, group: list[Queued], done: asyncio.Future[Settled]) -> None:
        self._in_flight = False
        error = done.exception()
        settle([(f, (False, error)) for _, f in group] if error else done.result())
        self._next()

    async def _release(self) -> None:
        """Nothing to release: connections go back to the engine's pool after each group."""
