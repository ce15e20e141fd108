"""``LoopWrites``: the PostgreSQL writer's path on the event loop, for a group of writes that
only queue rows (an auto-tier submission) while the log's size can be assumed.

The writer's groups run on a thread of their own (``bot.store.pggroup``), because an
operation may read inside the transaction (a compare-and-set, the pending cap) through
SQLAlchemy's sync API. A group whose operations execute no statement needs no connection
until its flush, and its flush needs no answer before the ``COMMIT`` (``log.Pending``
with ``known``): it can go out from the event loop on psycopg's async driver, in one pipeline
synced once. That saves the hand-off to the writer's thread and back, which on the 2-core
VM cost about as much as the transaction's round trip (``bench/store_write.py``).

The operations run on the loop with a connection that refuses every use
(``NO_CONNECTION``): they only queue. Whatever this path cannot take (an operation that
refused or touched the connection, a flush with a statement of its own, a size another
writer moved, a queued row that collides, no connection to be had) comes back as ``None``
and the group runs again on the thread the usual way, where each operation sees its own
error; nothing of such a try is committed. A connection that fails once the ``COMMIT`` is
on its way leaves the outcome unknown: the group fails with ``StoreError`` (as on the
thread) and the next group connects again. One the server closed while it was idle (a
restart, a failover) is seen before anything is sent on it (``closed_while_idle``) and
replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn, cast

import psycopg
from sqlalchemy import Connection, exc
from sqlalchemy.engine import URL, Dialect

from bot.store import log
from bot.store.changes import libpq_conninfo
from bot.store.engine import closed_while_idle, store_error
from bot.store.writer import Op, Outcome

logger = logging.getLogger(__name__)


class _Refused:
    """A connection for operations that must not use one."""

    def __getattr__(self, name: str) -> NoReturn:
        raise _Unqueued(f"an operation said to only queue rows used the connection ({name})")


class _Unqueued(Exception):
    """An operation meant for the loop executed a statement after all."""


NO_CONNECTION = cast(Connection, _Refused())
#: the checked lock refused the size (DataError), or a queued row collided (IntegrityError,
#: or a later statement of the pipeline aborted)
_MOVED_OR_COLLIDED = (psycopg.DataError, psycopg.IntegrityError, psycopg.errors.PipelineAborted)


class LoopWrites:
    """One async connection, opened on first use; ``await close()`` when done."""

    def __init__(self, url: URL, dialect: Dialect, *, timeout: float) -> None:
        self._url = url
        self._conninfo = libpq_conninfo(url)
        self._dialect = dialect
        self._timeout = timeout
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def run(
        self,
        ops: list[Op[Any]],
        frontier: log.Frontier,
        known: log.Assumable,
        clock: Callable[[], datetime],
    ) -> list[Outcome] | None:
        """Run ``ops`` in one transaction numbered from ``known`` (``Frontier.assumable``);
        their outcomes, or ``None`` when this path could not commit them and nothing of
        them committed (see the module docstring: the caller runs them the usual way). A
        moved size or a collision also tells ``frontier`` (``missed``). Raises
        ``StoreError`` when the connection failed after the ``COMMIT`` was queued."""
        pending = log.Pending(NO_CONNECTION, frontier, clock, batch=True, known=known)
        try:
            outcomes: list[Outcome] = [(True, op(NO_CONNECTION, pending)) for op in ops]
        except Exception:
            return None
        flush = pending.pg_writes(self._dialect)
        if flush is None:
            return None
        writes, remember = flush
        try:
            conn = await self._connection()
        except psycopg.Error:
            return None  # nothing was sent: the thread path tries, and reports, on its own
        try:
            async with conn.pipeline():
                async with conn.cursor() as cursor:
                    for sql, params in writes:
                        if len(params) == 1:
                            await cursor.execute(sql, params[0])
                        elif params:
                            await cursor.executemany(sql, params)
                await conn.execute(b"COMMIT")
        except psycopg.Error as error:
            await self._after(error)
            if isinstance(error, _MOVED_OR_COLLIDED):
                frontier.missed()  # the size moved (or a row collided): as usual from here
                return None  # the transaction was aborted: nothing of it committed
            # the connection failed with the COMMIT sent or queued: whether it committed is
            # unknown, so the writes are not tried again (as on the thread: StoreError)
            failed = exc.DBAPIError.instance(
                None, None, error, psycopg.Error, connection_invalidated=True, dialect=self._dialect
            )
            raise store_error(failed, self._url) from error
        remember()
        return outcomes

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed and closed_while_idle(conn.fileno()):
            await conn.close()  # the server ended it (a restart, a failover): nothing sent yet
        if conn is None or conn.closed or conn.broken:
            conn = self._conn = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=False,
                connect_timeout=max(1, int(self._timeout)),
                application_name="signoff-writer",
            )
        return conn

    async def _after(self, error: psycopg.Error) -> None:
        """Leave the connection idle after a failed try, or drop it."""
        conn = self._conn
        if conn is None:
            return
        if conn.broken or conn.closed:
            self._conn = None
            logger.debug("the writer's loop connection broke: %s", type(error).__name__)
            return
        try:
            await conn.rollback()
        except psycopg.Error:
            self._conn = None
            await conn.close()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
