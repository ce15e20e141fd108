"""callbacks owed

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

The table of callbacks owed for final requests (``bot.store.tables.CallbackOwedRow``): a
callback still being delivered when its process stopped is taken over by another process
instead of being lost. Requests that became final before this revision owe nothing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "callbacks_owed",
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index(
        op.f("ix_callbacks_owed_due_at"), "callbacks_owed", ["due_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_callbacks_owed_due_at"), table_name="callbacks_owed")
    op.drop_table("callbacks_owed")
