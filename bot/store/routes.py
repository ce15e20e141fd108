"""Routing facts signoff learns at run time, kept in the database so that every replica (and
a restarted process) knows them: e.g. the Bot Framework service URL Teams gave for a
conversation in an authenticated activity.

A fact is ``(platform, kind, key) → value``; a newer value replaces the older one. Migration
``0003_learned_routes`` creates the table. Database failures raise ``StoreError``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field

from bot.domain import utc
from bot.store.sql import SqlStore
from bot.store.tables import TIMESTAMP, Base, _table


class LearnedRouteRow(Base, table=True):
    __tablename__ = "learned_routes"

    platform: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    value: str = Field(nullable=False)
    updated_at: datetime = Field(sa_type=TIMESTAMP, nullable=False)


LEARNED_ROUTES = _table(LearnedRouteRow)


class RouteStore:
    """Learned routing facts on a ``SqlStore``'s database."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        dialect = store.engine.dialect.name
        self._upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert

    async def remember(
        self, platform: str, kind: str, key: str, value: str, *, at: datetime
    ) -> None:
        """Record (or replace) one fact."""
        table = LEARNED_ROUTES
        statement = (
            self._upsert(table)
            .values(platform=platform, kind=kind, key=key, value=value, updated_at=utc(at))
            .on_conflict_do_update(
                index_elements=[table.c.platform, table.c.kind, table.c.key],
                set_={"value": value, "updated_at": utc(at)},
            )
        )
        await self._store.execute(statement)

    async def lookup(self, platform: str, kind: str, key: str) -> str | None:
        table = LEARNED_ROUTES
        query = select(table.c.value).where(
            table.c.platform == platform, table.c.kind == kind, table.c.key == key
        )

        def read(conn: Connection) -> str | None:
            value = conn.execute(query).scalar()
            return None if value is None else str(value)

        return await self._store.read(read)

    async def all(self, platform: str, kind: str) -> dict[str, str]:
        table = LEARNED_ROUTES
        query = select(table.c.key, table.c.value).where(
            table.c.platform == platform, table.c.kind == kind
        )
        rows = await self._store.read(lambda conn: conn.execute(query).all())
        return {str(row.key): str(row.value) for row in rows}
