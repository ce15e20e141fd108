"""Alembic environment of signoff.

Online migrations run on the connection that ``bot.store.migrate`` puts in
``config.attributes["connection"]`` (inside its transaction and append lock); offline
(``--sql``) runs render SQL for ``sqlalchemy.url``.
"""

from __future__ import annotations

from alembic import context

from bot.store.tables import METADATA

config = context.config


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=METADATA,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run signoff migrations through bot.store.migrate.upgrade()")
    context.configure(
        connection=connection,
        target_metadata=METADATA,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
