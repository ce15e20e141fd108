"""``PgWriter``: the PostgreSQL strategy of the write queue (``bot.store.batching``).

Every write that appends to the evidence log takes the ``log_head`` row lock, so concurrent
PostgreSQL transactions run one after another anyway — each paying its own round trips,
lock wait and commit (WAL flush). Instead ONE transaction at a time commits whatever queued
while the previous one ran: one log-head lock, one multi-row insert of the group's requests
and log entries (``log.Pending.insert_later``), and one commit for the whole group; one
write alone when the server is idle.

The groups run on the writer's own thread and connection. Sharing the readers' threads made
each group wait in their queue behind every read that arrived before it (a FIFO executor):
under 200 concurrent agents that wait, paid by every write in turn, was most of the p99.
A group whose writes only queue rows (``queues_only``: an auto-tier submission) while the
log's size can be assumed goes out from the event loop instead, on psycopg's async driver
(``bot.store.pgasync``), without the hand-off to that thread and back; what that path
cannot take runs on the thread as before.

A group in which one write refuses (a lost compare-and-set, a duplicate vote) or breaks a
constraint runs again with a savepoint per write, so only that write fails
(``bot.store.writer.run_transaction``). A database failure fails the whole group with
``StoreError``; nothing in it committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from sqlalchemy.engine import URL

from bot.errors import StoreError
from bot.store import log
from bot.store.batching import Queued, Settled, WriteQueue, settle
from bot.store.engine import PG_CONNECT_TIMEOUT_S, make_engine
from bot.store.pgasync import LoopWrites
from bot.store.writer import pooled


class PgWriter(WriteQueue):
    """Commits PostgreSQL writes one group at a time; ``close`` (awaited) releases its
    thread and connection."""

    def __init__(
        self,
        url: URL,
        frontier: log.Frontier,
        clock: Callable[[], datetime],
        *,
        timeout: float = float(PG_CONNECT_TIMEOUT_S),
    ) -> None:
        super().__init__(url, frontier, clock)
        self._engine = make_engine(url, pool_size=1, name="signoff-writer-thread")
        self._connect = pooled(self._engine)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="signoff-writer")
        self._in_flight = False
        self._on_loop = LoopWrites(url, self._engine.dialect, timeout=timeout)
        self._tasks: set[asyncio.Task[None]] = set()

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
        if all(queues_only for _, _, queues_only in group):
            known = self._frontier.assumable()
            if known is not None:  # on the loop, unless that cannot take it
                task = loop.create_task(self._loop_group(group, known))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return
        self._to_thread(group)

    async def _loop_group(self, group: list[Queued], known: log.Assumable) -> None:
        ops = [op for op, _, _ in group]
        try:
            outcomes = await self._on_loop.run(ops, self._frontier, known, self._clock)
        except StoreError as error:
            outcomes = [(False, error)] * len(group)
        except asyncio.CancelledError:  # the loop is going away
            self._in_flight = False
            self._refuse(group)
            raise
        if outcomes is None:
            self._to_thread(group)
            return
        self._in_flight = False
        settle([(future, outcome) for (_, future, _), outcome in zip(group, outcomes, strict=True)])
        self._next()

    def _to_thread(self, group: list[Queued]) -> None:
        loop = asyncio.get_running_loop()
        try:
            done = loop.run_in_executor(self._thread, self._commit, self._connect, group)
        except RuntimeError:  # the executor is shut down
            self._in_flight = False
            self._refuse(group)
            self._next()
            return
        done.add_done_callback(lambda finished: self._finished(group, finished))

    def _finished(self, group: list[Queued], done: asyncio.Future[Settled]) -> None:
        self._in_flight = False
        error = done.exception()
        settle([(f, (False, error)) for _, f, _ in group] if error else done.result())
        self._next()

    async def _release(self) -> None:
        await self._on_loop.close()
        await asyncio.get_running_loop().run_in_executor(self._thread, self._engine.dispose)
        self._thread.shutdown(wait=True)
