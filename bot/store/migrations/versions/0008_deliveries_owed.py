"""deliveries owed

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

The table of deliveries owed (``bot.store.tables.DeliveryOwedRow``): the callback of a final
request and the cards of a new one, recorded with the commit that owes them, so that one still
being delivered when its process stopped is taken over by another process instead of being
lost. Requests committed before this revision owe nothing.
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
        "deliveries_owed",
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "kind"),
    )
    op.create_index(
        op.f("ix_deliveries_owed_due_at"), "deliveries_owed", ["due_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_deliveries_owed_due_at"), table_name="deliveries_owed")
    op.drop_table("deliveries_owed")
