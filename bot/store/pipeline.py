"""PostgreSQL round trips saved with psycopg 3's pipeline mode.

A write transaction on PostgreSQL used to cost a round trip per statement: ``BEGIN`` (which
psycopg sends by itself before the first statement), the log-head lock, each insert, the
size update, ``COMMIT``. Two places need no answer in between, so their statements go out
together (libpq pipeline mode):

- ``scalar``: the first read of a transaction (the log-head lock) travels with the ``BEGIN``
  psycopg queues in front of it: one round trip instead of two.
- ``pipelined``: the rows a transaction writes at its end (``log.Pending.flush``) and the
  ``COMMIT`` after them, synced once: one round trip instead of one per statement. Nothing
  inside reads
  a result; an error (a broken constraint) comes out as SQLAlchemy's ``IntegrityError``
  from the statement or the ``COMMIT`` where psycopg reads it, and every statement queued
  after it fails as ``aborted`` (the caller then looks for the culprit as after an
  ``IntegrityError``); the transaction rolls back. When the connection breaks before the
  pipeline's last sync (PostgreSQL stopped), psycopg raises at the block's end; that
  comes out as SQLAlchemy's ``OperationalError`` too, with the connection invalidated, so
  that callers see the database unavailable and the pool does not reuse it.

On SQLite both do nothing special (``bot.store.raw`` is SQLite's fast path).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, exc

if TYPE_CHECKING:
    import psycopg


def driver_of(conn: Connection) -> psycopg.Connection[Any] | None:
    if conn.dialect.name != "postgresql":
        return None
    import psycopg  # loaded only on PostgreSQL (a SQLite server never imports the driver)

    driver = conn.connection.driver_connection
    return driver if isinstance(driver, psycopg.Connection) else None


@contextlib.contextmanager
def pipelined(conn: Connection) -> Iterator[None]:
    """Statements executed inside, then the transaction's ``COMMIT``, go to PostgreSQL
    together: when the block ends without an exception the transaction is committed (the
    ``COMMIT`` SQLAlchemy sends afterwards finds nothing to do: psycopg skips it on an idle
    connection). Only for statements whose results nobody reads inside the block. On SQLite
    it does nothing: the transaction commits as usual."""
    driver = driver_of(conn)
    if driver is None:
        yield
        return
    import psycopg

    try:
        with driver.pipeline():
            yield
            # queued here, not by SQLAlchemy's commit: psycopg syncs the pipeline after a
            # commit() and again at the block's end, a second round trip for nothing
            driver.execute(b"COMMIT")
    except psycopg.Error as error:
        broken = driver.broken
        if broken:
            conn.invalidate()
        raise exc.DBAPIError.instance(
            None, None, error, psycopg.Error, connection_invalidated=broken, dialect=conn.dialect
        ) from error


def scalar(conn: Connection, sql: str) -> Any:
    """The first column of the first row of ``sql`` (no parameters), or None; on PostgreSQL
    sent in pipeline mode, so that the ``BEGIN`` psycopg puts in front of a transaction's
    first statement shares its round trip."""
    driver = driver_of(conn)
    if driver is None:
        return conn.exec_driver_sql(sql).scalar()
    import psycopg

    cursor = driver.cursor()
    try:
        with driver.pipeline():
            cursor.execute(sql)
        row = cursor.fetchone()
    except psycopg.Error as error:
        raise exc.DBAPIError.instance(
            sql, None, error, psycopg.Error, dialect=conn.dialect
        ) from error
    finally:
        cursor.close()
    return None if row is None else row[0]


def aborted(error: exc.SQLAlchemyError) -> bool:
    """Whether ``error`` is a statement skipped because an earlier one in the same pipeline
    failed (whose own error psycopg may not have read yet)."""
    if "psycopg" not in sys.modules:  # then it is no psycopg error
        return False
    import psycopg

    return isinstance(error, exc.DBAPIError) and isinstance(
        error.orig, psycopg.errors.PipelineAborted
    )
