"""session keys and labels on requests

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

SPEC §5 Sessions: each request records the session key its call gave and the labels the
policy put on it; a partial covering index serves the one query per evaluation.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("session_key", sa.String(), nullable=True))
        batch.add_column(sa.Column("labels", sa.String(), server_default="", nullable=False))
    op.create_index(
        "ix_requests_session",
        "requests",
        ["session_key", "created_at", "labels", "id"],
        unique=False,
        sqlite_where=sa.text("session_key IS NOT NULL"),
        postgresql_where=sa.text("session_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_requests_session", table_name="requests")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("labels")
        batch.drop_column("session_key")
