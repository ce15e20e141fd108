"""Hot-path statements, executed straight on the DBAPI cursor (writes on SQLite, reads on
PostgreSQL).

The store's write path runs a handful of fixed statements per transaction (the log head,
log entries, tree nodes, new requests). Through SQLAlchemy Core each costs some 30-40 µs of
Python before SQLite sees it; for the one SQLite writer that is most of a small
transaction. ``RawStatement`` compiles a Core statement once per dialect and, on SQLite,
runs the compiled text on the cursor with the columns' own bind processors (so values are
stored exactly as Core would store them: JSON text, datetime strings, blobs; SQLite's
datetime and JSON processors are swapped for equivalent faster ones, see ``_fast``). An
``INSERT`` of many rows becomes ONE multi-row ``INSERT`` (one ``sqlite3_step``, one
release of the GIL) instead of one step per row.

On PostgreSQL ``insert_many`` and ``execute`` run the statement compiled once
(``bot.store.pgraw``, loaded with the first such statement: psycopg's ``%(name)s``
parameters, the same bind processors) on the psycopg cursor: inside the
write pipeline (``bot.store.pipeline``) a statement is only queued, so SQLAlchemy's own
execution (some 40-60 µs of Python per statement) was most of what it cost; a
``scalar`` without parameters rides in pipeline mode (``bot.store.pipeline.scalar``), one
with parameters goes through ``Connection.execute``. ``RawQuery`` runs the hot reads on the
psycopg cursor likewise.
Driver errors come out as SQLAlchemy's ``DBAPIError`` subclasses (``IntegrityError`` …)
exactly as from Core.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, exc
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import sqltypes
from sqlalchemy.sql.compiler import SQLCompiler

from bot.store import pipeline
from bot.store.binder import Binder, Processor

if TYPE_CHECKING:
    from bot.store.pgraw import PgCompiled

#: SQLite's default limit on host parameters in one statement is 32766
_MAX_PARAMS = 32_000

_SQLITE_DATETIME = sqlite.DATETIME()._storage_format  # type: ignore[no-untyped-call]


class _Compiled:
    def __init__(self, statement: Any, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if not isinstance(compiled, SQLCompiler) or not compiled.positiontup:
            names: list[str] = []
        else:
            names = list(compiled.positiontup)
        self.sql: str = compiled.string
        self.names = names
        types = {name: bind.type for name, bind in compiled.binds.items()}
        self._multi: dict[int, str] = {}
        #: the parameters of one row
        self.row = Binder(
            names,
            [_fast(types[name].dialect_impl(dialect), dialect) for name in names],
            {
                name: bind.value
                for name, bind in compiled.binds.items()
                if not bind.required and bind.callable is None and name in names
            },
        )

    def multi(self, count: int) -> str:
        """The text of an ``INSERT … VALUES (…), (…)`` with ``count`` rows."""
        sql = self._multi.get(count)
        if sql is None:
            head, sep, tail = self.sql.partition(" VALUES ")
            if not sep or tail.count("?") != len(self.names):
                raise ValueError("not a plain single-row INSERT")
            sql = head + sep + ", ".join([tail] * count)
            if len(self._multi) < 64:
                self._multi[count] = sql
        return sql


def _fast(impl: Any, dialect: Dialect) -> Processor:
    """``impl``'s bind processor; on SQLite, for the kinds a request and its log entry have
    several of, one that writes the same value with less work: ``DATETIME`` in its default
    storage format (one C call instead of a ``%`` format of seven fields), ``JSON`` with the
    default serializer (the C encoder built once instead of on every ``json.dumps``) and
    binary columns as the bytes themselves (SQLAlchemy wraps each in a ``memoryview``, a
    type ``sqlite3`` then searches its adapters for; ``engine._bind_plainly``)."""
    process: Processor = impl.bind_processor(dialect)
    if process is None or dialect.name != "sqlite":
        return process
    slow = process
    if isinstance(impl, sqlite.DATETIME) and impl._storage_format == _SQLITE_DATETIME:
        last: list[tuple[datetime, str]] = [(datetime.min, "0001-01-01 00:00:00.000000")]

        def fast_datetime(value: Any) -> Any:
            if type(value) is datetime:
                # a row binds the same instant several times: reuse the last text when the
                # wall time is the same (equal and the same tzinfo object, or both naive)
                seen, text = last[0]
                if value.tzinfo is seen.tzinfo and value == seen:
                    return text
                # "YYYY-MM-DD HH:MM:SS.ffffff" with any "+HH:MM" cut off, as the default
                text = value.isoformat(" ", "microseconds")[:26]
                last[0] = (value, text)
                return text
            return slow(value)

        return fast_datetime
    if isinstance(impl, sqltypes.LargeBinary):

        def fast_binary(value: Any) -> Any:
            return value if type(value) is bytes else slow(value)  # the same BLOB

        return fast_binary
    if (
        isinstance(impl, sqltypes.JSON)
        and _JSON_ENCODER is not None
        and getattr(dialect, "_json_serializer", None) is None
        and impl._str_impl.bind_processor(dialect) is None
    ):
        encode = _JSON_ENCODER
        # Core writes None as the JSON text "null" unless the column says none_as_null
        none_text = None if impl.none_as_null else "null"

        def fast_json(value: Any) -> Any:
            kind = type(value)
            if kind is dict or kind is list or kind is tuple:
                return "".join(encode(value, 0))  # what json.dumps(value) returns
            if value is None and none_text is not None:
                return none_text
            return slow(value)

        return fast_json
    return process


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


#: ``json.dumps``'s own C encoder with its default settings (None without the accelerator)
_JSON_ENCODER = (
    json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        None, _not_json, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )
    if json.encoder.c_make_encoder is not None  # type: ignore[attr-defined]
    else None
)


class RawStatement:
    """A Core statement run on the DBAPI cursor on SQLite (see the module docstring)."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}
        self._literal: dict[str, str] = {}
        self._pg: PgCompiled | None = None

    def _on_pg(self, dialect: Dialect) -> PgCompiled:
        if self._pg is None:
            from bot.store.pgraw import PgCompiled  # PostgreSQL only: loads the driver

            self._pg = PgCompiled(self.statement, dialect)
        return self._pg

    def pg_write(
        self, dialect: Dialect, rows: Sequence[dict[str, Any]]
    ) -> tuple[str, list[dict[str, Any]]]:
        """Its PostgreSQL text and psycopg's parameters for each of ``rows``, for a caller
        that executes them itself (on psycopg's async driver)."""
        pg = self._on_pg(dialect)
        return pg.sql, [pg.params(values) for values in rows]

    def _for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._compiled[dialect.name] = _Compiled(self.statement, dialect)
        return compiled

    def scalar(self, conn: Connection, values: dict[str, Any] | None = None) -> Any:
        """The first column of the first row (``None`` without rows)."""
        dialect = conn.dialect
        if dialect.name != "sqlite":
            if values:
                return conn.execute(self.statement, values).scalar()
            sql = self._literal.get(dialect.name)
            if sql is None:
                compiled = self.statement.compile(
                    dialect=dialect, compile_kwargs={"literal_binds": True}
                )
                sql = self._literal[dialect.name] = compiled.string
            return pipeline.scalar(conn, sql)
        compiled = self._for(dialect)
        row = execute_sql(conn, compiled.sql, compiled.row(values or {})).fetchone()
        return None if row is None else row[0]

    def execute(self, conn: Connection, values: dict[str, Any] | None = None) -> int:
        """Run it once; returns the row count (-1 inside a pipeline, where it is not known
        yet)."""
        dialect = conn.dialect
        if dialect.name != "sqlite":  # PostgreSQL, the only other engine (engine.parse_url)
            pg = self._on_pg(dialect)
            return pg.run(conn, [pg.params(values or {})])
        compiled = self._for(dialect)
        return int(execute_sql(conn, compiled.sql, compiled.row(values or {})).rowcount)

    def insert_many(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``rows`` (a plain ``INSERT``): one statement per page of rows on SQLite."""
        if not rows:
            return
        dialect = conn.dialect
        if dialect.name != "sqlite":
            pg = self._on_pg(dialect)
            pg.run(conn, [pg.params(values) for values in rows])
            return
        compiled = self._for(dialect)
        page = max(1, _MAX_PARAMS // max(1, len(compiled.names)))
        for start in range(0, len(rows), page):
            chunk = rows[start : start + page]
            params: list[Any] = []
            for values in chunk:
                params.extend(compiled.row(values))
            execute_sql(conn, compiled.multi(len(chunk)), params)


def execute_sql(conn: Connection, sql: str, params: list[Any]) -> Any:
    """Run ``sql`` on ``conn``'s DBAPI cursor; returns the cursor. Driver errors come out
    as SQLAlchemy's ``DBAPIError`` subclasses, as from ``Connection.execute``."""
    dialect = conn.dialect
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params)
    except dialect.loaded_dbapi.Error as error:
        raise exc.DBAPIError.instance(
            sql, params, error, dialect.loaded_dbapi.Error, dialect=dialect
        ) from error
    return cursor


class RawQuery:
    """A prebuilt ``SELECT`` with named parameters (``bindparam``), for the reads every
    decision and long-poll makes. On PostgreSQL its compiled text runs straight on the
    psycopg cursor, rows as named tuples: SQLAlchemy's execution costs more CPU than the
    query's round trip there, and no result processor applies to this schema's columns on
    PostgreSQL (psycopg itself gives JSON as Python values, ``timestamptz`` as aware
    datetimes, ``bytea`` as bytes), so the rows read alike. Elsewhere (SQLite, whose
    datetime and JSON columns need SQLAlchemy's processors) it goes through
    ``Connection.execute``. Driver errors come out as SQLAlchemy's ``DBAPIError``."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._pg: PgCompiled | None = None

    def all(self, conn: Connection, values: dict[str, Any]) -> Sequence[Any]:
        """Every row (on a store thread: ``Database.fetch`` runs it on the event loop)."""
        if conn.dialect.name != "postgresql":
            return conn.execute(self.statement, values).all()
        return self.on_pg(conn.dialect).fetch(conn, values)

    def on_pg(self, dialect: Dialect) -> PgCompiled:
        """The statement compiled for PostgreSQL (``sql``, and ``params(values)`` for it):
        for ``bot.store.pgreads``, which runs it on psycopg's async driver."""
        if self._pg is None:
            from bot.store.pgraw import PgCompiled  # PostgreSQL only: loads the driver

            self._pg = PgCompiled(self.statement, dialect)
        return self._pg


#: a hot read and its parameters (``Database.fetch`` runs several in one round trip)
Read = tuple[RawQuery, dict[str, Any]]
