"""Cluster-wide leadership: the one process that runs the escalation scheduler's loop.

Every process sharing the database competes; exactly one leads at a time, and a leader that
dies (even by ``kill -9``) is replaced within ``RETRY_S`` of the database noticing:

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) held on a dedicated
  connection outside the pool, keyed by the schema, so the lock dies with the connection. The
  leader checks the connection every ``CHECK_S``; when it is lost the work is cancelled (a
  new leader may already run) and the process competes again.
- SQLite: an exclusive ``flock`` on ``<database file>.leader``; the kernel releases it when
  the process ends. A private in-memory database has one process: it always leads.

Correctness never depends on there being one leader (every step is claimed with a
compare-and-set); leadership saves the other processes the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sqlalchemy.engine import URL

from bot.store.changes import libpq_conninfo

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

RETRY_S = 0.5
CHECK_S = 2.0
#: first key of the advisory lock (the second is a hash of the schema name)
_LOCK_CLASS = 0x516E
_TRY_LOCK = "SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))"

Work = Callable[[], Awaitable[None]]


async def lead(url: URL, work: Work, *, retry: float = RETRY_S, check: float = CHECK_S) -> None:
    """Run ``work()`` whenever this process leads, until cancelled."""
    if url.get_backend_name() == "postgresql":
        await _lead_postgres(url, work, retry, check)
    elif url.database in (None, "", ":memory:"):
        await work()
    else:
        await _lead_sqlite(f"{url.database}.leader", work, retry)


async def _lead_postgres(url: URL, work: Work, retry: float, check: float) -> None:
    import psycopg  # loaded only on PostgreSQL (a SQLite server never imports the driver)

    conninfo = libpq_conninfo(url)
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True, connect_timeout=10, application_name="signoff-leader"
            ) as conn:
                while True:
                    if await _try_lock(conn):
                        break
                    await asyncio.sleep(retry)
                log.info("leading: this process runs the escalation scheduler")
                await _while_alive(conn, work, check)
        except psycopg.Error as error:
            log.warning("leadership connection lost (%s); competing again", error)
        await asyncio.sleep(retry)


async def _try_lock(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> bool:
    row = await (await conn.execute(_TRY_LOCK, (_LOCK_CLASS,))).fetchone()
    return bool(row and row[0])


async def _while_alive(
    conn: psycopg.AsyncConnection[tuple[object, ...]], work: Work, check: float
) -> None:
    """Run ``work`` until it ends or the lock's connection fails (then raise)."""
    task = asyncio.ensure_future(work())
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=check)
            if not task.done():
                await conn.execute("SELECT 1")  # raises when the connection is gone
        await task
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _lead_sqlite(path: str, work: Work, retry: float) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                await asyncio.sleep(retry)
                continue
            log.info("leading: this process runs the escalation scheduler")
            try:
                await work()
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            return
    finally:
        os.close(fd)
