"""Write transactions, one at a time (PostgreSQL) or grouped (SQLite).

An *operation* is a synchronous function ``op(conn, pending)`` that writes its rows and queues
its attestations on ``pending`` (``bot.store.log.Pending``). ``run_transaction`` runs a list of
operations in ONE transaction; when one of several raises (a lost compare-and-set, a duplicate
vote), the transaction runs again with each operation in a savepoint, so that one is undone
alone and gets its own exception while the others commit together with their attestations.
Operations must therefore be safe to run again (they only touch the database and ``pending``).

SQLite allows one writer at a time and most of a small transaction's cost is the commit, so
``GroupCommit`` queues writes for the store's single thread and commits whatever accumulated
while the previous transaction ran: many decisions per commit under load, one when idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, exc
from sqlalchemy.engine import URL

from bot.errors import StoreError
from bot.store import log
from bot.store.engine import store_error

T = TypeVar("T")
Op = Callable[[Connection, log.Pending], T]
Outcome = tuple[bool, Any]  # (True, result) or (False, exception)

MAX_BATCH = 256


def run_transaction(
    engine: Engine,
    frontier: log.Frontier,
    clock: Callable[[], datetime],
    ops: list[Op[Any]],
) -> list[Outcome]:
    """Run ``ops`` in one write transaction; one outcome per op. Raises SQLAlchemy errors
    (and, when there is a single op, whatever it raises) when the transaction fails.

    Several ops first run together without savepoints (the common case: nobody refuses),
    their queued inserts written together (``log.Pending.insert_later``); if one refuses,
    or a row of the group breaks a constraint, the transaction rolls back and runs again
    with a savepoint per op, each op writing its own rows.
    """
    if len(ops) == 1:
        return _attempt(engine, frontier, clock, ops, guarded=False)
    try:
        return _attempt(engine, frontier, clock, ops, guarded=False)
    except exc.IntegrityError:  # a queued row collided: find out whose
        return _attempt(engine, frontier, clock, ops, guarded=True)
    except exc.SQLAlchemyError:
        raise
    except Exception:  # an op refused (Conflict, NotFound, ValueError): isolate each op
        return _attempt(engine, frontier, clock, ops, guarded=True)


def _attempt(
    engine: Engine,
    frontier: log.Frontier,
    clock: Callable[[], datetime],
    ops: list[Op[Any]],
    *,
    guarded: bool,
) -> list[Outcome]:
    with engine.connect().execution_options(signoff_write=True) as conn:
        with conn.begin():
            pending = log.Pending(conn, frontier, clock, batch=not guarded and len(ops) > 1)
            if guarded:
                outcomes = [_in_savepoint(conn, pending, op) for op in ops]
            else:
                outcomes = [(True, op(conn, pending)) for op in ops]
            remember = pending.flush()
        if remember is not None:
            remember()
    return outcomes


def _in_savepoint(conn: Connection, pending: log.Pending, op: Op[Any]) -> Outcome:
    # plain SQL: SQLAlchemy's begin_nested() compiles its SAVEPOINT anew on every call
    mark = pending.mark()
    conn.exec_driver_sql("SAVEPOINT signoff_op")
    try:
        result = op(conn, pending)
    except exc.SQLAlchemyError:
        raise  # the database failed: the whole transaction fails
    except Exception as error:  # the operation refused (Conflict, NotFound, ValueError)
        conn.exec_driver_sql("ROLLBACK TO SAVEPOINT signoff_op")
        conn.exec_driver_sql("RELEASE SAVEPOINT signoff_op")
        pending.truncate(mark)
        return False, error
    conn.exec_driver_sql("RELEASE SAVEPOINT signoff_op")
    return True, result


class GroupCommit:
    """Serialises writes onto ``executor`` (one thread) and commits them in groups."""

    def __init__(
        self,
        engine: Engine,
        url: URL,
        executor: Executor,
        frontier: log.Frontier,
        clock: Callable[[], datetime],
    ) -> None:
        self._engine = engine
        self._url = url
        self._executor = executor
        self._frontier = frontier
        self._clock = clock
        self._lock = threading.Lock()
        self._queue: deque[tuple[Op[Any], asyncio.Future[Any]]] = deque()
        self._scheduled = False

    async def submit(self, op: Op[T]) -> T:
        """Run ``op`` in the next group. Raises what ``op`` raises, or ``StoreError``."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._lock:
            if not self._scheduled:
                self._executor.submit(self._drain)  # RuntimeError once the store closed
                self._scheduled = True
            self._queue.append((op, future))
        return await future

    def _drain(self) -> None:
        """Commit one group, then requeue behind any reads waiting for the thread."""
        with self._lock:
            group = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]
        try:
            self._commit(group)
        finally:
            with self._lock:
                self._scheduled = bool(self._queue)
                if self._scheduled:
                    self._resubmit()

    def _resubmit(self) -> None:
        try:
            self._executor.submit(self._drain)
        except RuntimeError:  # the store closed with writes queued: refuse them
            closed: Outcome = (False, StoreError("the store is closed"))
            while self._queue:
                _, future = self._queue.popleft()
                _call_soon(future.get_loop(), [(future, closed)])
            self._scheduled = False

    def _commit(self, group: list[tuple[Op[Any], asyncio.Future[Any]]]) -> None:
        ops = [op for op, _ in group]
        try:
            outcomes = run_transaction(self._engine, self._frontier, self._clock, ops)
        except exc.SQLAlchemyError as error:
            failure: BaseException = store_error(error, self._url)
            failure.__cause__ = error
            outcomes = [(False, failure)] * len(group)
        except Exception as error:  # a single op refused, or the log is damaged
            outcomes = [(False, error)] * len(group)
        # one wake-up per event loop, not one per operation
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]] = {}
        for (_, future), outcome in zip(group, outcomes, strict=True):
            by_loop.setdefault(future.get_loop(), []).append((future, outcome))
        for loop, settled in by_loop.items():
            _call_soon(loop, settled)


def _call_soon(
    loop: asyncio.AbstractEventLoop, settled: list[tuple[asyncio.Future[Any], Outcome]]
) -> None:
    with contextlib.suppress(RuntimeError):  # a closed event loop: nobody waits any more
        loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[asyncio.Future[Any], Outcome]]) -> None:
    for future, (ok, value) in settled:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
