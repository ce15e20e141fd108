"""Persistence: ``SqlStore`` (the ``bot.ports.Store`` on SQLite or PostgreSQL), its sqlmodel
tables, the row ↔ domain translators and the Alembic migrations.

SQLAlchemy and Alembic are imported only inside this package.
"""

from bot.store.sql import SqlStore

__all__ = ["SqlStore"]
