"""The change feed: which requests other processes sharing the database just changed.

Every ``SqlStore.commit`` (a vote, decision, expiry, cancel, escalation step or execution
outcome) is announced so that long-polls waiting in *other* processes wake at once:

- PostgreSQL: ``pg_notify('signoff_changes', request_id)`` runs inside the committing
  transaction, so the notification is delivered exactly when (and only if) the change
  commits. Each process LISTENs on one dedicated autocommit connection (psycopg 3's async
  driver, outside the pool). When that connection is lost the feed reports itself down
  (callers then re-read the store on a slow cadence), reconnects with back-off, and once it
  listens again wakes every waiter once so nothing missed while down stays unseen.
- SQLite (several processes on one file): no server to notify through, so while anyone in
  this process waits, a thread polls ``PRAGMA data_version`` (it changes when any other
  connection commits; a few microseconds) every ``SQLITE_POLL_S`` and, when it changed,
  reads the new log entries' request ids (every change appends one). While nobody waits
  (the auto tier's load) it reads nothing; when waiting starts again every waiter re-reads
  its request once (``on_live(True)``), so nothing committed in between goes unseen.

``on_change(request_id)`` and ``on_live(bool)`` are called on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import URL

from bot.store.log import Pending
from bot.store.raw import execute_sql

log = logging.getLogger(__name__)

CHANNEL = "signoff_changes"
#: back-off between reconnects of the LISTEN connection, in seconds (the last one repeats)
RECONNECT_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)
#: how often a SQLite process looks for commits by other processes while a long-poll waits
SQLITE_POLL_S = 0.005
#: how long the SQLite poll sleeps while nobody waits, when it is woken as waiting begins
#: (``on_interest``): a look every 5 ms costs the busy event loop a GIL hand-off each time
SQLITE_IDLE_S = 1.0

OnChange = Callable[[str], None]
OnLive = Callable[[bool], None]
Interested = Callable[[], bool]
#: ``on_interest(wake)``: have ``wake()`` called (on the event loop) when waiting begins
Subscribe = Callable[[Callable[[], None]], None]

_NOTIFY_SQL = f"SELECT pg_notify('{CHANNEL}', %s)"
_NOTIFY_ALL_SQL = f"SELECT pg_notify('{CHANNEL}', id) FROM unnest(%s::text[]) AS id"  # noqa: S608
#: libpq TCP keepalives: a LISTEN connection to a vanished server is noticed within ~25 s
_KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def announce(conn: Connection, pending: Pending, request_id: str) -> None:
    """Inside a write transaction: tell other processes that ``request_id`` changed
    (PostgreSQL; a no-op on SQLite, whose feed reads the log instead). In a batched
    transaction the notifications of the whole group go out in one statement with its
    rows and ``COMMIT`` (no round trip of their own)."""
    if conn.dialect.name != "postgresql":
        return
    if pending.batch:
        pending.at_flush(_announce_all, request_id)
    else:  # in a savepoint: a rolled-back operation's notification is dropped with it
        conn.exec_driver_sql(_NOTIFY_SQL, (request_id,))


def _announce_all(conn: Connection, request_ids: list[Any]) -> None:
    # on the DBAPI cursor: in pipeline mode the statement is only queued
    execute_sql(conn, _NOTIFY_ALL_SQL, [request_ids])


def libpq_conninfo(url: URL) -> str:
    """A libpq URI for ``url`` (a ``postgresql+psycopg://`` SQLAlchemy URL)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def listen_postgres(
    url: URL,
    on_change: OnChange,
    on_live: OnLive,
    *,
    delays: tuple[float, ...] = RECONNECT_DELAYS,
    connect_timeout: float = 10.0,
) -> None:
    """LISTEN until cancelled, reconnecting with back-off after any failure."""
    import psycopg  # loaded only on PostgreSQL (a SQLite server never imports the driver)

    conninfo = libpq_conninfo(url)
    failures = 0
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(
                conninfo,
                autocommit=True,
                connect_timeout=int(connect_timeout),
                application_name="signoff-changes",
                **_KEEPALIVES,
            )
        except psycopg.Error as error:
            delay = delays[min(failures, len(delays) - 1)]
            failures += 1
            log.warning(
                "change feed: cannot connect (%s); retrying in %ss", _one_line(error), delay
            )
            await asyncio.sleep(delay)
            continue
        try:
            async with conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                failures = 0
                on_live(True)
                async for notice in conn.notifies():
                    on_change(notice.payload)
        except psycopg.Error as error:
            log.warning("change feed: connection lost (%s); reconnecting", _one_line(error))
        finally:
            on_live(False)
        delay = delays[min(failures, len(delays) - 1)]
        failures += 1
        await asyncio.sleep(delay)


async def poll_sqlite(
    path: str,
    on_change: OnChange,
    on_live: OnLive,
    interested: Interested,
    *,
    every: float = SQLITE_POLL_S,
    on_interest: Subscribe | None = None,
) -> None:
    """Poll the SQLite file at ``path`` for other connections' commits until cancelled,
    every ``every`` seconds while ``interested()``. While nobody is, it sleeps: until
    ``on_interest`` reports that waiting began (at most ``SQLITE_IDLE_S``), or, without
    ``on_interest``, ``every`` seconds as well."""
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    nudge = threading.Event()  # waiting began (or the poll stops)
    idle = every
    if on_interest is not None:
        on_interest(nudge.set)
        idle = SQLITE_IDLE_S

    def report(ids: list[str]) -> None:
        for request_id in ids:
            on_change(request_id)

    def run() -> None:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 1000")
            version = -1
            size: int | None = None  # the log size seen last; None while nobody waits
            loop.call_soon_threadsafe(on_live, True)
            while not stop.is_set():
                if size is None and not interested():
                    nudge.wait(idle)  # a set() after interested() said no ends it at once
                    nudge.clear()
                elif stop.wait(every):
                    break
                if not interested():  # nothing to wake: no reads at all (the auto tier)
                    size = None
                    continue
                now = conn.execute("PRAGMA data_version").fetchone()[0]
                if size is None:
                    # someone waits again: take the log's size as the new baseline, then
                    # have every waiter re-read once (a change committed between a waiter's
                    # read and this baseline would otherwise go unseen)
                    version, size = now, _log_size(conn)
                    loop.call_soon_threadsafe(on_live, True)
                    continue
                if now == version:
                    continue
                version = now
                new_size = _log_size(conn)
                if new_size > size:
                    rows = conn.execute(
                        "SELECT DISTINCT request_id FROM log_entries WHERE idx >= ? AND idx < ?",
                        (size, new_size),
                    ).fetchall()
                    ids = [row[0] for row in rows if row[0] is not None]
                    if ids:
                        loop.call_soon_threadsafe(report, ids)
                    size = new_size
        except sqlite3.Error as error:
            log.warning("change feed: SQLite poll stopped (%s)", error)
        finally:
            conn.close()
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(on_live, False)

    try:
        while True:  # a poll that stopped on an error starts again a second later
            done: asyncio.Future[None] = loop.create_future()

            def finish(future: asyncio.Future[None] = done) -> None:
                if not future.done():
                    future.set_result(None)

            def body() -> None:
                try:
                    run()
                finally:
                    with contextlib.suppress(RuntimeError):  # the loop is closed
                        loop.call_soon_threadsafe(finish)

            thread = threading.Thread(target=body, name="signoff-change-feed", daemon=True)
            thread.start()
            await done
            await asyncio.sleep(1.0)
    finally:
        stop.set()
        nudge.set()


def _log_size(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT size FROM log_head").fetchone()
    return int(row[0]) if row else 0


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
