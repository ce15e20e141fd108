"""Schema migrations: Alembic driven from code, on the store's own engine.

The migration scripts ship inside the package (``bot/store/migrations``), so an installed
signoff can create and upgrade its database without an ``alembic.ini``. Migrations run in one
transaction that holds the append lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL advisory
lock), so several processes starting at once migrate exactly once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, inspect, text

from bot.store.tables import METADATA

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"
#: the newest revision in ``migrations/versions`` (a test checks it against Alembic's head), so
#: a process starting on an up-to-date database never imports Alembic (~12 MB of RSS)
HEAD = "0008"
#: key of the PostgreSQL advisory lock taken while migrating ("signoff" in ASCII)
MIGRATION_LOCK = 0x7369676E6F6666


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` for signoff's migrations, bound to ``connection`` if given."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    from alembic.migration import MigrationContext

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
        if revision == "head" and _stamped(connection) == HEAD:
            return
        from alembic import command

        before = current_revision(connection)
        if before == head_revision() and revision == "head":
            return
        command.upgrade(alembic_config(connection), revision)
        log.info("store schema migrated from %s to %s", before, revision)


def _stamped(connection: Connection) -> str | None:
    """The revision recorded in ``alembic_version``, read without Alembic."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    return str(rows[0][0]) if len(rows) == 1 else None


def differences(engine: Engine) -> list[Any]:
    """What Alembic autogenerate sees between the tables and the migrated database (empty when
    they agree)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, METADATA))
