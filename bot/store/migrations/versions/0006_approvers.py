"""approvers: rule options, edited arguments, votes per version of the arguments

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

``requests.options`` holds a confirm rule's approver options (``editable``, ``step_up``);
``requests.edit`` an approver's edit of the arguments. ``votes.arguments_sha256`` records the
version of the arguments a vote approved ("" for votes from before edits existed: the
agent's original), and one human may vote once per version.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("requests", sa.Column("options", sa.JSON(), nullable=True))
    op.add_column("requests", sa.Column("edit", sa.JSON(), nullable=True))
    with op.batch_alter_table("votes") as batch:
        batch.add_column(
            sa.Column("arguments_sha256", sa.String(), nullable=False, server_default="")
        )
        batch.drop_constraint("uq_votes_request_id_approver_key", type_="unique")
        batch.create_unique_constraint(
            "uq_votes_request_id_approver_key_arguments",
            ["request_id", "approver_key", "arguments_sha256"],
        )


def downgrade() -> None:
    with op.batch_alter_table("votes") as batch:
        batch.drop_constraint("uq_votes_request_id_approver_key_arguments", type_="unique")
        batch.create_unique_constraint(
            "uq_votes_request_id_approver_key", ["request_id", "approver_key"]
        )
        batch.drop_column("arguments_sha256")
    op.drop_column("requests", "edit")
    op.drop_column("requests", "options")
