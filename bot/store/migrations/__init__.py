"""Alembic migrations of the signoff schema (run by ``bot.store.migrate``, not by alembic.ini)."""
