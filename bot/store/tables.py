"""The SQL schema of signoff as sqlmodel tables (and their Core ``Table`` objects).

Rows are never handed out of ``bot.store``: ``bot.store.mapping`` translates them to and from
domain values. The Alembic migrations under ``bot/store/migrations`` must create exactly this
schema (``tests/integration/test_store.py`` compares them).

Enums are stored as their string values (no database enum types, so new values need no
migration). JSON columns use the generic ``JSON`` type, which PostgreSQL stores as ``json``
(text kept verbatim: key order, big integers and float digits round-trip exactly).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

# SQLite only makes ``INTEGER PRIMARY KEY`` an alias of the rowid (no extra index).
BIG_ID = BigInteger().with_variant(Integer(), "sqlite")
TIMESTAMP = DateTime(timezone=True)

#: sentinel primary key of the single ``log_head`` row
HEAD_ID = 1


class Base(SQLModel, registry=registry()):
    """Own registry and metadata, so tables defined elsewhere never join the migrations."""


class AgentRow(Base, table=True):
    __tablename__ = "agents"

    id: str = Field(primary_key=True)
    token_hash: str = Field(unique=True, index=True)
    artifact_digest: str | None = Field(default=None, nullable=True)
    labels: dict[str, str] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    suspended: bool = Field(default=False, nullable=False)
    created_at: datetime = Field(sa_type=TIMESTAMP, nullable=False)


class RequestRow(Base, table=True):
    __tablename__ = "requests"
    __table_args__ = (
        Index("ix_requests_status_created_at", "status", "created_at"),
        Index("ix_requests_agent_id_created_at", "agent_id", "created_at"),
        Index("ix_requests_created_at", "created_at"),
        # SPEC §5 Sessions: one index range scan per evaluation, covering (no table reads);
        # partial, so calls without a session key cost no index write
        Index(
            "ix_requests_session",
            "session_key",
            "created_at",
            "labels",
            "id",
            sqlite_where=text("session_key IS NOT NULL"),
            postgresql_where=text("session_key IS NOT NULL"),
        ),
        Index(
            "uq_requests_agent_id_idempotency_key",
            "agent_id",
            "idempotency_key",
            unique=True,
            sqlite_where=text("idempotency_key IS NOT NULL"),
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    id: str = Field(primary_key=True)
    agent_id: str = Field(nullable=False)
    tool: str = Field(nullable=False)
    arguments: Any = Field(sa_type=JSON, nullable=False)
    justification: str = Field(nullable=False)
    context: Any = Field(sa_type=JSON, nullable=False)
    tier: str = Field(nullable=False)
    status: str = Field(nullable=False)
    policy: Any = Field(sa_type=JSON, nullable=False)
    requirement: Any = Field(sa_type=JSON, nullable=False)
    created_at: datetime = Field(sa_type=TIMESTAMP, nullable=False)
    arguments_sha256: str = Field(nullable=False)
    call_sha256: str = Field(nullable=False)
    artifact_digest: str | None = Field(default=None, nullable=True)
    escalation: Any = Field(sa_type=JSON, nullable=False)
    deadline: datetime | None = Field(default=None, sa_type=TIMESTAMP, nullable=True)
    decided_at: datetime | None = Field(default=None, sa_type=TIMESTAMP, nullable=True)
    reason: str | None = Field(default=None, nullable=True)
    callback_url: str | None = Field(default=None, nullable=True)
    idempotency_key: str | None = Field(default=None, nullable=True)
    body_sha256: str | None = Field(default=None, nullable=True)
    extra_groups: Any = Field(sa_type=JSON, nullable=False)
    steps_done: int = Field(default=0, nullable=False)
    grant: str | None = Field(default=None, nullable=True)
    grant_expires_at: datetime | None = Field(default=None, sa_type=TIMESTAMP, nullable=True)
    grant_used_at: datetime | None = Field(default=None, sa_type=TIMESTAMP, nullable=True)
    outcome: str | None = Field(default=None, nullable=True)
    last_log_index: int | None = Field(default=None, sa_type=BigInteger, nullable=True)
    version: int = Field(default=0, nullable=False)
    session_key: str | None = Field(default=None, nullable=True)
    #: the call's session labels, sorted and comma-joined ("" for none): groupable text
    labels: str = Field(default="", nullable=False, sa_column_kwargs={"server_default": ""})
    claimed_artifact_digest: str | None = Field(default=None, nullable=True)  # 0005
    # rule options for approvers ({"editable": bool, "step_up": str | null}) and an
    # approver's edit of the arguments ({"arguments", "arguments_sha256", "call_sha256",
    # "by", "by_name", "at"}); null when none
    options: Any = Field(default=None, sa_type=JSON, nullable=True)
    edit: Any = Field(default=None, sa_type=JSON, nullable=True)


class VoteRow(Base, table=True):
    __tablename__ = "votes"
    __table_args__ = (
        # One vote per human per version of the arguments ("" = the agent's original):
        # an approver's edit resets earlier approvals, whose approvers may approve again.
        UniqueConstraint(
            "request_id",
            "approver_key",
            "arguments_sha256",
            name="uq_votes_request_id_approver_key_arguments",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(foreign_key="requests.id", nullable=False, ondelete="CASCADE")
    approver_key: str = Field(nullable=False)
    platform: str = Field(nullable=False)
    tenant: str = Field(nullable=False)
    user_id: str = Field(nullable=False)
    display_name: str = Field(nullable=False)
    email: str | None = Field(default=None, nullable=True)
    via: str = Field(nullable=False)
    verdict: str = Field(nullable=False)
    group: str = Field(nullable=False)
    reason: str = Field(nullable=False)
    at: datetime = Field(sa_type=TIMESTAMP, nullable=False)
    arguments_sha256: str = Field(
        default="", nullable=False, sa_column_kwargs={"server_default": ""}
    )


class PostRow(Base, table=True):
    __tablename__ = "posts"
    __table_args__ = (
        UniqueConstraint(
            "request_id", "platform", "channel", "message_id", name="uq_posts_message"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(foreign_key="requests.id", nullable=False, ondelete="CASCADE")
    platform: str = Field(nullable=False)
    group: str = Field(nullable=False)
    channel: str = Field(nullable=False)
    message_id: str = Field(nullable=False)
    thread_id: str | None = Field(default=None, nullable=True)
    extra: dict[str, str] = Field(default_factory=dict, sa_type=JSON, nullable=False)


class RateCounterRow(Base, table=True):
    __tablename__ = "rate_counters"

    key: str = Field(primary_key=True)
    window_start: datetime = Field(sa_type=TIMESTAMP, primary_key=True)
    count: int = Field(nullable=False)


class LogEntryRow(Base, table=True):
    __tablename__ = "log_entries"

    idx: int = Field(sa_type=BIG_ID, primary_key=True, sa_column_kwargs={"autoincrement": False})
    request_id: str | None = Field(default=None, nullable=True, index=True)
    event: str = Field(nullable=False)
    envelope: bytes = Field(sa_type=LargeBinary, nullable=False)
    leaf_hash: bytes = Field(sa_type=LargeBinary, nullable=False)
    created_at: datetime = Field(sa_type=TIMESTAMP, nullable=False)


class LogNodeRow(Base, table=True):
    """A perfect subtree of the RFC 6962 tree: ``2**level`` leaves from ``idx * 2**level``."""

    __tablename__ = "log_nodes"
    # SQLite: the primary key is the table (no rowid), halving the size of the tree
    __table_args__ = {"sqlite_with_rowid": False}

    level: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    idx: int = Field(
        sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    hash: bytes = Field(sa_type=LargeBinary, nullable=False)


class CheckpointRow(Base, table=True):
    __tablename__ = "checkpoints"

    id: int | None = Field(default=None, primary_key=True)
    size: int = Field(sa_type=BigInteger, nullable=False, index=True)
    root: bytes = Field(sa_type=LargeBinary, nullable=False)
    note: str = Field(nullable=False)
    created_at: datetime = Field(sa_type=TIMESTAMP, nullable=False)


class LogHeadRow(Base, table=True):
    """One row (``id = HEAD_ID``): the log size. Updating it is the append lock."""

    __tablename__ = "log_head"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    size: int = Field(sa_type=BigInteger, nullable=False)


class DeliveryOwedRow(Base, table=True):
    """A delivery owed (``bot.domain.Delivery``): the callback of a request that became final
    (SPEC §6 ``callback_url``), the cards of a new confirm or notify request. Inserted in the
    transaction that owes it, deleted once it was delivered or given up. Until ``due_at`` the
    process that holds it (first the one that committed it) is delivering it; after that any
    process may take it over. ``version`` is the compare-and-set token of every take and hold;
    ``attempts`` counts the attempts made."""

    __tablename__ = "deliveries_owed"

    request_id: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    due_at: datetime = Field(sa_type=TIMESTAMP, nullable=False, index=True)
    attempts: int = Field(default=0, nullable=False)
    version: int = Field(default=0, nullable=False)


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)  # noqa: S101 - sqlmodel always builds a Table
    return table


METADATA: MetaData = Base.metadata
AGENTS = _table(AgentRow)
REQUESTS = _table(RequestRow)
VOTES = _table(VoteRow)
POSTS = _table(PostRow)
RATE_COUNTERS = _table(RateCounterRow)
LOG_ENTRIES = _table(LogEntryRow)
LOG_NODES = _table(LogNodeRow)
CHECKPOINTS = _table(CheckpointRow)
LOG_HEAD = _table(LogHeadRow)
DELIVERIES_OWED = _table(DeliveryOwedRow)
