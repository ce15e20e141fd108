"""SQLAlchemy engines for signoff's two databases, and database errors as signoff errors.

SQLite: WAL journal, ``synchronous=NORMAL``, a busy timeout and foreign keys, set on every
new connection; pysqlite's own transaction handling is switched off and SQLAlchemy emits
``BEGIN IMMEDIATE`` for write transactions (connections with the ``signoff_write`` execution
option) and a plain ``BEGIN`` for reads, so a write takes the database lock up front instead
of failing with "database is locked" on its first write.

``sqlite://`` (no path) is a private in-memory database, handy for tests.

PostgreSQL (``postgresql+psycopg://``): a connection pool and a connect timeout; readers'
engines in autocommit (``make_engine(autocommit=True)``). A pooled connection the server
closed while it sat idle is replaced at checkout instead of failing its next use
(``closed_while_idle``).
"""

from __future__ import annotations

import functools
import os
import re
import select
import sqlite3
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from bot.errors import StoreError
from bot.store.raw import execute_sql

SQLITE_BUSY_TIMEOUT_MS = 5000
SQLITE_WAL_LIMIT_BYTES = 64 * 1024 * 1024
PG_CONNECT_TIMEOUT_S = 10


def parse_url(url: str) -> URL:
    """Raises ``StoreError`` for URLs that are neither SQLite nor PostgreSQL."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError as error:
        raise StoreError(f"database url is not valid: {safe_text(str(error), url)}") from error
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(
            f"unsupported database {parsed.get_backend_name()!r}: "
            "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
        )
    return parsed


def make_engine(
    url: URL, *, pool_size: int, autocommit: bool = False, name: str = "signoff"
) -> Engine:
    """An engine for ``url``; on PostgreSQL ``pool_size`` connections kept and as many more
    at a peak, named ``name`` in ``pg_stat_activity`` (each of signoff's connections names
    the part that holds it). With ``autocommit`` (PostgreSQL) each statement is its own
    transaction: one round trip for a read instead of three (``BEGIN``, the query,
    ``COMMIT``); under READ COMMITTED, PostgreSQL's default, each statement of a
    transaction takes its own snapshot anyway."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    url, connect_args = _postgres(url)
    connect_args["application_name"] = name
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args=connect_args,
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
    )
    event.listen(engine, "checkout", _replace_if_closed)
    return engine


def closed_while_idle(fileno: int) -> bool:
    """Whether PostgreSQL has spoken on an idle connection (one poll(2), no round trip).

    Between queries the server sends a connection that does not LISTEN nothing unless it is
    closing it: a restart or failover, ``pg_terminate_backend`` and ``idle_session_timeout``
    send a FATAL error and end the socket; a backend that died ends it too. Such a
    connection would fail the next query sent on it, and a write sent on it could not be
    told apart from one lost after its ``COMMIT``: it is not used again. (A reported
    setting changed while idle, e.g. ``in_hot_standby`` on a promotion, also counts: the
    cost of that is one new connection.)"""
    poller = select.poll()
    poller.register(fileno, select.POLLIN)
    return bool(poller.poll(0))


def _replace_if_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    if dbapi_connection.closed or closed_while_idle(dbapi_connection.fileno()):
        # the pool drops this connection and checks out a new one in its place
        raise exc.DisconnectionError("the server closed the connection while it was idle")


def _postgres(url: URL) -> tuple[URL, dict[str, Any]]:
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
    return url, connect_args


def _create_private(path: str) -> None:
    """Create the database file readable by its owner only (0600) before SQLite does (with
    the umask's 0644): it holds the evidence, agent token hashes and console sessions.
    SQLite gives its ``-wal``/``-shm`` files the database file's permissions."""
    if path.startswith("file:"):
        return  # a URI filename: SQLite's own business
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # SQLite reports the problem (with a hint) when it opens the file
    os.close(fd)


@functools.cache  # once per process: the registry it fills is process-wide
def _bind_plainly() -> None:
    """Have ``sqlite3`` bind ``None``, ``bytes`` and ``memoryview`` parameters without a
    failed adapter search. It binds exact ``int``/``float``/``str`` straight, but asks its
    adapter registry about any other type, and on a miss looks ``__adapt__`` up on its
    ``PrepareProtocol`` *type*, which in CPython 3.11 formats an ``AttributeError`` message
    and throws it away (~0.7 µs). An auto-tier request's rows bind 14 such values (10 NULL
    columns, the envelope, its leaf hash and ~2 Merkle nodes; ``raw._fast`` binds binary
    columns as bytes, SQLAlchemy Core as memoryviews), so the registry now has an entry for
    each of these types that gives back the value as it is bound anyway: the same bytes
    reach SQLite. Process-wide (``sqlite3``'s registry is), and harmless to other users for
    that reason. (Booleans never get here: SQLAlchemy binds them as 0 and 1.)"""
    sqlite3.register_adapter(type(None), _NONE)
    sqlite3.register_adapter(bytes, bytes)  # bytes(b) is b itself for exact bytes
    sqlite3.register_adapter(memoryview, memoryview)  # a new view of the same buffer


#: a C callable that returns ``None`` (for ``None``): ``{}.get(None)``; no Python frame
_NOTHING: dict[None, None] = {}
_NONE: Callable[[None], None] = _NOTHING.get


def _sqlite_engine(url: URL) -> Engine:
    _bind_plainly()
    if url.database in (None, "", ":memory:"):
        # one private in-memory database: every use must share its single connection
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        _create_private(url.database)
        # two kept connections: the group writer's on the event loop, and the store thread's
        # (reads, checkpoints, writes that must wait for a lock); a connection may be
        # opened on one thread and used on the other, never by two at once (the pool)
        engine = create_engine(
            url, pool_size=2, max_overflow=4, connect_args={"check_same_thread": False}
        )
    # executemany of an INSERT becomes one multi-row INSERT: one sqlite3_step (and one
    # release of the GIL) for a whole group of rows instead of one per row
    engine.dialect.use_insertmanyvalues_wo_returning = True

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # hand transaction control to the "begin" hook below
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            # a WAL that grew under load is cut back to this size when it starts over
            cursor.execute(f"PRAGMA journal_size_limit = {SQLITE_WAL_LIMIT_BYTES}")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        # on the DBAPI cursor: through ``exec_driver_sql`` this one statement costs more
        # Python than the rest of a small write transaction
        write = connection.get_execution_options().get("signoff_write")
        execute_sql(connection, "BEGIN IMMEDIATE" if write else "BEGIN", [])

    return engine


def safe_text(message: str, url: str | URL) -> str:
    """``message`` on one line, with the URL's password (if any) blanked out wherever it
    stands on its own (as typed or URL-quoted): not inside a longer run of letters and
    digits, so a password ``p`` leaves "port 5432" readable."""
    parsed = url if isinstance(url, URL) else _try_parse(url)
    password = parsed.password if parsed is not None else None
    line = " ".join(message.split())
    if password:
        forms = {str(password), quote_plus(str(password)), quote(str(password), safe="")}
        alternatives = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
        line = re.sub(f"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])", "***", line)
    return line


def _try_parse(url: str) -> URL | None:
    try:
        return make_url(url)
    except exc.ArgumentError:
        return None


def store_error(error: exc.SQLAlchemyError, url: URL) -> StoreError:
    """A one-line ``StoreError`` for a database failure, naming the database but not the
    password."""
    cause = error.orig if isinstance(error, exc.DBAPIError) and error.orig else error
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    where = url.render_as_string(hide_password=True)
    hint = ""
    if url.get_backend_name() == "sqlite" and "unable to open" in first:
        hint = " (does its directory exist, and may signoff write there?)"
    return StoreError(f"database {where} is unavailable: {safe_text(first, url)}{hint}")
