"""Schema migrations: Alembic driven from code, on the store's own engine.

The migration scripts ship inside the package (``bot/store/migrations``), so an installed
signoff can create and upgrade its database without an ``alembic.ini``. Migrations run in one
transaction that holds the append lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL advisory
lock), so several processes starting at once migrate exactly once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from bot.store.tables import METADATA

log = logging.getLogger(__name__)

SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"
#: key of the PostgreSQL advisory lock taken while migrating ("signoff" in ASCII)
MIGRATION_LOCK = 0x7369676E6F6666


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` for signoff's migrations, bound to ``connection`` if given."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _lock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or migrate the schema to ``revision`` in one locked transaction.

    Raises SQLAlchemy errors; ``SqlStore.open`` translates them to ``StoreError``.
    """
    connect = engine.connect().execution_options(signoff_write=True)
    with connect as connection, connection.begin():
        _lock(connection)
        before = current_revision(connection)
        if before == head_revision() and revision == "head":
            return
        command.upgrade(alembic_config(connection), revision)
        log.info("store schema migrated from %s to %s", before, revision)


def differences(engine: Engine) -> list[Any]:
    """What Alembic autogenerate sees between the tables and the migrated database (empty when
    they agree)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, METADATA))
