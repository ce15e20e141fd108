"""webauthn credentials

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

The table of ``bot.store.passkeys``: console users' security keys (credential id, COSE public
key, signature counter) for rules with ``step_up: webauthn``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webauthn_credentials",
        sa.Column("credential_id", sa.String(), nullable=False),
        sa.Column("user_name", sa.String(), nullable=False),
        sa.Column("public_key", sa.String(), nullable=False),
        sa.Column("sign_count", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_name"], ["console_users.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("credential_id"),
    )
    op.create_index(
        op.f("ix_webauthn_credentials_user_name"),
        "webauthn_credentials",
        ["user_name"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_webauthn_credentials_user_name"), table_name="webauthn_credentials")
    op.drop_table("webauthn_credentials")
