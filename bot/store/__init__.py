"""Persistence: ``SqlStore`` (the ``bot.ports.Store`` on SQLite or PostgreSQL), its sqlmodel
tables, the row ↔ domain translators and the Alembic migrations.

SQLAlchemy and Alembic are imported only inside this package.
"""

from bot.store.passkeys import PasskeyStore  # its table joins METADATA (migration 0007)
from bot.store.routes import RouteStore  # its table joins METADATA (migration 0003)
from bot.store.sql import SqlStore
from bot.store.users import UserStore  # its tables join METADATA (migration 0002)

__all__ = ["PasskeyStore", "RouteStore", "SqlStore", "UserStore"]
