"""``PgReads``: the hot reads on PostgreSQL, run on the event loop with psycopg 3's async
driver and pool (``psycopg_pool.AsyncConnectionPool``), no thread in between.

The reads every decision, long-poll and authentication makes (``RawQuery``: a request, its
votes and cards, an agent, a console user or session) used to go to the store's reader
threads, each hop a hand-off of the GIL both ways. On the loop a read costs about half the
CPU (measured on this 2-core box with 16 reads in flight: ~105 µs against ~200 µs per read,
the query's own round trip included). Several reads asked for together (``fetch``) share one
round trip (pipeline mode). SQLAlchemy's asyncio layer was tried in an earlier round and
cost more than the threads: it runs the sync driver's code under greenlets; this is
psycopg's own async code.

The pool holds ``size`` autocommit connections (``database.pool_size``): each query is its
own statement and snapshot, as on the reader threads. A connection that breaks (PostgreSQL
restarted) is dropped by the pool and replaced in the background; the read that met it
fails with ``StoreError``, as does a read that waits longer than ``timeout`` for a
connection (PostgreSQL down).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy import exc
from sqlalchemy.engine import URL, Dialect

from bot.errors import StoreError
from bot.store.changes import libpq_conninfo
from bot.store.engine import store_error
from bot.store.raw import RawQuery

Read = tuple[RawQuery, dict[str, Any]]


class PgReads:
    """``await open()`` before the first ``fetch``; ``await close()`` when done."""

    def __init__(self, url: URL, dialect: Dialect, size: int, *, timeout: float) -> None:
        self._url = url
        self._dialect = dialect
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
        await self._pool.close()

    async def fetch(self, reads: Sequence[Read]) -> list[list[Any]]:
        """Every row of each read (named tuples), in order; several reads go out together.
        Raises ``StoreError``."""
        compiled = [(query.on_pg(self._dialect), values) for query, values in reads]
        params = [c.params(values) for c, values in compiled]
        try:
            async with self._pool.connection() as conn:
                if len(compiled) == 1:
                    cursor = conn.cursor(row_factory=namedtuple_row)
                    await cursor.execute(compiled[0][0].sql, params[0])
                    return [await cursor.fetchall()]
                cursors = [conn.cursor(row_factory=namedtuple_row) for _ in compiled]
                async with conn.pipeline():
                    for cursor, (c, _), p in zip(cursors, compiled, params, strict=True):
                        await cursor.execute(c.sql, p)
                return [await cursor.fetchall() for cursor in cursors]
        except PoolTimeout as error:
            raise StoreError(
                f"database {self._url.render_as_string(hide_password=True)} is unavailable: "
                f"no connection within {self._pool.timeout:g} s"
            ) from error
        except psycopg.Error as error:
            wrapped = exc.DBAPIError.instance(
                compiled[0][0].sql, params[0], error, psycopg.Error, dialect=self._dialect
            )
            raise store_error(wrapped, self._url) from error
