"""claimed artifact digest

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

``requests.claimed_artifact_digest``: the artifact digest a request body claimed when it
differs from the agent's registered one (issue 12 item 7). The registered digest stays in
``requests.artifact_digest``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("requests", sa.Column("claimed_artifact_digest", sa.String(), nullable=True))


def downgrade() -> None:
    op.drop_column("requests", "claimed_artifact_digest")
