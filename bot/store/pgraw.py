"""The PostgreSQL half of ``bot.store.raw``: a statement compiled once for psycopg and run
on its cursor. Imported when a statement is first compiled for PostgreSQL, so a SQLite
server never loads the driver."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection, exc
from sqlalchemy.engine import Dialect

from bot.store import pipeline
from bot.store.binder import Binder


class PgCompiled:
    """A ``RawQuery``'s or ``RawStatement``'s statement compiled for PostgreSQL (psycopg's
    ``%(name)s`` parameters), with each parameter's bind processor and the values fixed in
    it."""

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql: str = compiled.string
        self._names = list(compiled.binds)
        self._bind = Binder(
            self._names,
            [
                bind.type.dialect_impl(dialect).bind_processor(dialect)
                for bind in compiled.binds.values()
            ],
            {
                name: bind.value
                for name, bind in compiled.binds.items()
                if not bind.required and bind.callable is None
            },
        )

    def params(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` as psycopg's named parameters (see ``Binder``)."""
        return dict(zip(self._names, self._bind(values), strict=True))

    def fetch(self, conn: Connection, values: dict[str, Any]) -> list[Any]:
        """The rows as named tuples."""
        params = self.params(values)
        try:
            with _psycopg(conn).cursor(row_factory=namedtuple_row) as cursor:
                cursor.execute(self.sql, params)
                return cursor.fetchall()
        except psycopg.Error as error:  # as from Connection.execute
            raise exc.DBAPIError.instance(
                self.sql, params, error, psycopg.Error, dialect=conn.dialect
            ) from error

    def run(self, conn: Connection, params: list[dict[str, Any]]) -> int:
        """Execute it once per set of ``params`` (a write: nothing is fetched); returns the
        row count of the last (-1 inside a pipeline, where it is not known yet)."""
        try:
            with _psycopg(conn).cursor() as cursor:
                if len(params) == 1:
                    cursor.execute(self.sql, params[0])
                else:
                    cursor.executemany(self.sql, params)
                return cursor.rowcount
        except psycopg.Error as error:  # as from Connection.execute
            raise exc.DBAPIError.instance(
                self.sql, params, error, psycopg.Error, dialect=conn.dialect
            ) from error


def _psycopg(conn: Connection) -> psycopg.Connection[Any]:
    driver = pipeline.driver_of(conn)
    if driver is None:  # pragma: no cover - psycopg only
        raise TypeError("raw statements on PostgreSQL need a psycopg connection")
    return driver
