"""``PgGroupCommit``: PostgreSQL writes committed in groups.

Every write that appends to the evidence log takes the ``log_head`` row lock, so concurrent
PostgreSQL transactions run one after another anyway — each paying its own round trips,
lock wait and commit (WAL flush). Instead, writes queue up and ONE transaction at a time, on
a store thread, commits whatever accumulated while the previous one ran: one log-head lock,
one multi-row insert of the group's requests and log entries (``log.Pending.insert_later``),
and one commit for the whole group; one write alone when the server is idle.

A group in which one write refuses (a lost compare-and-set, a duplicate vote) or breaks a
constraint runs again with a savepoint per write, so only that write fails
(``bot.store.writer.run_transaction``). A database failure fails the whole group with
``StoreError``; nothing in it committed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, exc
from sqlalchemy.engine import URL

from bot.errors import StoreError
from bot.store import log
from bot.store.engine import store_error
from bot.store.writer import Op, Outcome, pooled, run_transaction

T = TypeVar("T")
Queued = tuple[Op[Any], "asyncio.Future[Any]"]

MAX_BATCH = 256


class PgGroupCommit:
    """Groups PostgreSQL writes; ``close`` (awaited) before the engine is disposed."""

    def __init__(
        self,
        engine: Engine,
        url: URL,
        executor: Executor,
        frontier: log.Frontier,
        clock: Callable[[], datetime],
    ) -> None:
        self._connect = pooled(engine)
        self._url = url
        self._executor = executor
        self._frontier = frontier
        self._clock = clock
        self._queue: deque[Queued] = deque()
        self._in_flight = False
        self._closed = False
        self._idle: list[asyncio.Future[None]] = []

    async def submit(self, op: Op[T]) -> T:
        """Run ``op`` in the next group. Raises what ``op`` raises, or ``StoreError``."""
        if self._closed:
            raise StoreError("the store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((op, future))
        if not self._in_flight:
            self._next()
        return await future

    def _next(self) -> None:
        if not self._queue:
            self._wake_if_idle()
            return
        group = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]
        self._in_flight = True
        loop = asyncio.get_running_loop()
        try:
            done = loop.run_in_executor(self._executor, self._commit, [op for op, _ in group])
        except RuntimeError:  # the executor is shut down
            self._in_flight = False
            _settle(group, [(False, StoreError("the store is closed"))] * len(group))
            self._next()
            return
        done.add_done_callback(lambda finished: self._finished(group, finished))

    def _commit(self, ops: list[Op[Any]]) -> list[Outcome]:
        try:
            return run_transaction(self._connect, self._frontier, self._clock, ops)
        except exc.SQLAlchemyError as error:
            failure = store_error(error, self._url)
            failure.__cause__ = error
            return [(False, failure)] * len(ops)
        except Exception as error:  # a single op refused, or the log is damaged
            return [(False, error)] * len(ops)

    def _finished(self, group: list[Queued], done: asyncio.Future[list[Outcome]]) -> None:
        self._in_flight = False
        error = done.exception()
        _settle(group, [(False, error)] * len(group) if error else done.result())
        self._next()

    def _wake_if_idle(self) -> None:
        if not self._in_flight and not self._queue:
            waiters, self._idle = self._idle, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def close(self) -> None:
        """Commit what is queued, then refuse new writes."""
        while self._in_flight or self._queue:
            waiter = asyncio.get_running_loop().create_future()
            self._idle.append(waiter)
            await waiter
        self._closed = True


def _settle(group: list[Queued], outcomes: list[Outcome]) -> None:
    for (_, future), (ok, value) in zip(group, outcomes, strict=True):
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
