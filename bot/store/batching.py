"""``WriteQueue``: writes wait in one queue and commit in groups, one transaction per group.

Most of a small write transaction's cost is fixed (the log-head lock, the round trips, the
commit), so writes that arrive while a transaction runs share the next one. This module owns
what every engine shares: the queue, taking a group from it, running a group through
``bot.store.writer.run_transaction`` with database failures turned into ``StoreError``,
handing each waiter its outcome, and ``close`` (commit what is queued, then refuse).

*When* and *where* a group commits is the engine's strategy, a subclass: SQLite on the
event loop's own thread with checkpoints off it (``bot.store.group.SqliteWriter``),
PostgreSQL one group at a time on an async connection (``bot.store.pggroup.PgWriter``).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import exc
from sqlalchemy.engine import URL

from bot.errors import StoreError
from bot.store import log
from bot.store.engine import store_error
from bot.store.writer import Connect, Op, Outcome, run_transaction

T = TypeVar("T")
#: an op, its waiter, and whether the op only queues rows (``submit``)
Queued = tuple[Op[Any], "asyncio.Future[Any]", bool]
Settled = list[tuple["asyncio.Future[Any]", Outcome]]

#: most writes in one transaction
MAX_BATCH = 256


class WriteQueue(ABC):
    """Queues writes; a subclass commits them (``_kick`` starts work, ``_busy`` says whether
    any is under way). ``close`` (awaited) before the engine is disposed."""

    def __init__(self, url: URL, frontier: log.Frontier, clock: Callable[[], datetime]) -> None:
        self._url = url
        self._frontier = frontier
        self._clock = clock
        self._queue: deque[Queued] = deque()
        self._closed = False
        self._idle: list[asyncio.Future[None]] = []  # close() waiting for the work to end

    async def submit(self, op: Op[T], *, queues_only: bool = False) -> T:
        """Run ``op`` in a coming group. ``queues_only``: ``op`` executes no statement, it
        only queues rows on its ``Pending`` (``add``, ``insert_later``, ``at_flush``; the
        PostgreSQL writer sends such groups from the event loop, ``bot.store.pgasync``).
        Raises what ``op`` raises, or ``StoreError``."""
        if self._closed:
            raise StoreError("the store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((op, future, queues_only))
        self._kick()
        return await future

    @abstractmethod
    def _kick(self) -> None:
        """A write was queued: see that a group will take it."""

    @abstractmethod
    def _in_progress(self) -> bool:
        """Whether a group (or other work that ``close`` must wait for) is under way."""

    def _take(self) -> list[Queued]:
        """The next group: up to ``MAX_BATCH`` writes from the head of the queue."""
        return [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]

    def _commit(
        self,
        connect: Connect,
        group: list[Queued],
        reraise: Callable[[exc.SQLAlchemyError], bool] | None = None,
    ) -> Settled:
        """Run ``group`` in one transaction; each future with its outcome. Database failures
        become ``StoreError`` outcomes, except those ``reraise`` picks, which raise."""
        try:
            outcomes = run_transaction(
                connect, self._frontier, self._clock, [op for op, _, _ in group]
            )
        except exc.SQLAlchemyError as error:
            if reraise is not None and reraise(error):
                raise
            failure = store_error(error, self._url)
            failure.__cause__ = error
            outcomes = [(False, failure)] * len(group)
        except Exception as error:  # a single op refused, or the log is damaged
            outcomes = [(False, error)] * len(group)
        return [(future, outcome) for (_, future, _), outcome in zip(group, outcomes, strict=True)]

    def _refuse(self, group: list[Queued]) -> None:
        """The store closed under ``group``: each write fails with ``StoreError``."""
        settle([(future, (False, StoreError("the store is closed"))) for _, future, _ in group])

    def _busy(self) -> bool:
        return bool(self._queue) or self._in_progress()

    def _wake_if_idle(self) -> None:
        if not self._busy():
            waiters, self._idle = self._idle, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def close(self) -> None:
        """Commit what is queued, then refuse new writes (``_release`` frees the
        strategy's own resources)."""
        while self._busy():
            waiter = asyncio.get_running_loop().create_future()
            self._idle.append(waiter)
            await waiter
        self._closed = True
        await self._release()

    @abstractmethod
    async def _release(self) -> None:
        """Release what the strategy holds (a kept connection)."""


def settle(settled: Settled) -> None:
    """Hand each future its outcome (a cancelled waiter is skipped)."""
    for future, (ok, value) in settled:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
