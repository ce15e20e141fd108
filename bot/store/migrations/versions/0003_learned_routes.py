"""learned routes

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

The table of ``bot.store.routes``: routing facts learned at run time (Teams service URLs per
conversation), shared by every replica.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "learned_routes",
        sa.Column("platform", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("platform", "kind", "key"),
    )


def downgrade() -> None:
    op.drop_table("learned_routes")
