"""``PgReads``: the hot reads on PostgreSQL, run on the event loop with psycopg 3's async
driver and pool (``psycopg_pool.AsyncConnectionPool``), no thread in between.

The reads every decision, long-poll and authentication makes (``RawQuery``: a request, its
votes and cards, an agent, a console user or session) used to go to the store's reader
threads, each hop a hand-off of the GIL both ways. On the loop a read costs less CPU
(``bench/store_read.py``, A/B in alternation: 0.353 / 0.295 ms through a thread, 0.227 /
0.155 ms on the loop, the query's round trip included). SQLAlchemy's asyncio layer was tried
in an earlier round and cost more than the threads: it runs the sync driver's code under
greenlets; this is psycopg's own async code.

Every read asked for in one turn of the event loop, by any caller, goes out in ONE round
trip on one connection (pipeline mode, up to ``MAX_BATCH`` statements). A saturated loop
takes a while to come back to a coroutine, and a connection is held from the query until
then: with one connection per read, the 200-agent soak (``bench/soak.py``) gave cancels a
p50 of ~0.7 s (timing the pool by hand in one run put most of that in waiting for a
connection, with 4 connections or 16). Batched, the soak's cancels went to p50 ~0.15-0.18 s
and PostgreSQL's CPU per call from 1.18 to 0.60-0.72 ms. A statement that fails aborts the
rest of its round trip: every read in that batch fails with ``StoreError`` (these are
prebuilt reads; in practice the database is unreachable or damaged, which fails them all
anyway).

The pool holds ``size`` autocommit connections (``database.pool_size``): each query is its
own statement and snapshot, as on the reader threads. A connection that breaks (PostgreSQL
restarted) is dropped by the pool and replaced in the background. One the server closed
while it sat idle is seen before a read is sent on it (``closed_while_idle``) and the read
takes another; reads that met a connection breaking under them fail with ``StoreError``, as
do reads that wait longer than ``timeout`` for a connection (PostgreSQL down).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import exc
from sqlalchemy.engine import URL, Dialect

from bot.errors import StoreError
from bot.store.changes import libpq_conninfo
from bot.store.engine import closed_while_idle, store_error
from bot.store.raw import Read

#: statements in one round trip at most (more wait for the next free connection)
MAX_BATCH = 256


class PgReads:
    """``await open()`` before the first ``fetch``; ``await close()`` when done."""

    def __init__(self, url: URL, dialect: Dialect, size: int, *, timeout: float) -> None:
        self._url = url
        self._dialect = dialect
        self._size = size
        self._pool = AsyncConnectionPool(
            libpq_conninfo(url),
            min_size=size,
            max_size=size,
            kwargs={
                "autocommit": True,
                "connect_timeout": int(timeout),
                "application_name": "signoff-reads",
            },
            timeout=timeout,
            open=False,
            name="signoff-reads",
        )
        self._asked: list[_Asked] = []  # fetches of this turn of the loop, not sent yet
        self._scheduled = False
        self._running: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        """Open the pool; raises ``StoreError`` when no connection can be made."""
        try:
            await self._pool.open(wait=True, timeout=self._pool.timeout)
        except PoolTimeout as error:
            await self._pool.close()
            raise StoreError(
                f"database {self._url.render_as_string(hide_password=True)} is unavailable: "
                "no connection could be opened"
            ) from error

    async def close(self) -> None:
        """Answer the reads under way, then close the connections."""
        while self._asked or self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
            await asyncio.sleep(0)  # a _send scheduled meanwhile runs
        await self._pool.close()

    async def fetch(self, reads: Sequence[Read]) -> list[list[Any]]:
        """Every row of each read (named tuples), in order. Raises ``StoreError``."""
        statements = [(query.on_pg(self._dialect), values) for query, values in reads]
        asked = _Asked([(c.sql, c.params(values)) for c, values in statements])
        self._asked.append(asked)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._send)
        return await asked.future

    def _send(self) -> None:
        """Send what this turn of the loop asked for: up to ``MAX_BATCH`` statements per
        round trip (a caller's reads stay together), each batch on a connection of its own."""
        self._scheduled = False
        asked, self._asked = self._asked, []
        batch: list[_Asked] = []
        size = 0
        for one in asked:
            if batch and size + len(one.statements) > MAX_BATCH:
                self._start(batch)
                batch, size = [], 0
            batch.append(one)
            size += len(one.statements)
        if batch:
            self._start(batch)

    def _start(self, batch: list[_Asked]) -> None:
        task = asyncio.ensure_future(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        # a batch cut short (cancelled at shutdown, or a fault) fails the reads it had not
        # answered: nobody waits for ever
        task.add_done_callback(lambda _: _fail(batch, StoreError("the read was interrupted")))

    async def _run(self, batch: list[_Asked]) -> None:
        statements = [statement for one in batch for statement in one.statements]
        try:
            conn = await self._connection()
            try:
                cursors = [conn.cursor(row_factory=namedtuple_row) for _ in statements]
                if len(statements) == 1:
                    await cursors[0].execute(*statements[0])
                else:
                    async with conn.pipeline():
                        for cursor, (sql, params) in zip(cursors, statements, strict=True):
                            await cursor.execute(sql, params)
                rows = [await cursor.fetchall() for cursor in cursors]
            finally:
                await self._pool.putconn(conn)
        except PoolTimeout as error:
            failure = StoreError(
                f"database {self._url.render_as_string(hide_password=True)} is unavailable: "
                f"no connection within {self._pool.timeout:g} s"
            )
            failure.__cause__ = error
            _fail(batch, failure)
            return
        except psycopg.Error as error:  # the first failure aborts the rest of the pipeline
            sql, params = statements[0]
            wrapped = exc.DBAPIError.instance(
                sql, params, error, psycopg.Error, dialect=self._dialect
            )
            failure = store_error(wrapped, self._url)
            failure.__cause__ = error
            _fail(batch, failure)
            return
        at = 0
        for one in batch:
            if not one.future.done():  # a caller that gave up (cancelled) is skipped
                one.future.set_result(rows[at : at + len(one.statements)])
            at += len(one.statements)

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        """A pooled connection the server has not closed while it sat idle
        (``closed_while_idle``: after a restart or a failover, every idle one): each such
        connection is dropped, and the pool opens another in the background."""
        for _ in range(self._size):
            conn = await self._pool.getconn()
            if not closed_while_idle(conn.fileno()):
                return conn
            await conn.close()
            await self._pool.putconn(conn)
        return await self._pool.getconn()


class _Asked:
    """One ``fetch``: its statements (SQL and parameters) and the future of their rows."""

    def __init__(self, statements: list[tuple[str, dict[str, Any]]]) -> None:
        self.statements = statements
        self.future: asyncio.Future[list[list[Any]]] = asyncio.get_running_loop().create_future()


def _fail(batch: list[_Asked], failure: StoreError) -> None:
    for one in batch:
        if not one.future.done():
            one.future.set_exception(failure)
