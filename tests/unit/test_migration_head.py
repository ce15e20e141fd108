"""The store's fast start path trusts ``migrate.HEAD``; it must name Alembic's real head."""

from bot.store import migrate


def test_head_constant_matches_the_newest_migration() -> None:
    assert migrate.head_revision() == migrate.HEAD
