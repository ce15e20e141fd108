"""The bulk read behind the escalation timers: every pending request's schedule, cheaply.

Rebuilding 100,000 timers at start must take seconds, so this reads only the five columns a
timer needs (not the whole request with its JSON arguments and context) and pages by
``(created_at, id)`` (a keyset, so no page skips or repeats rows while others change
status). It uses the public ``Database.read`` like ``bot.store.users``. Raises
``StoreError``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, cast, or_, select

from bot.domain import EscalationStep, PendingTimer, Status, utc
from bot.store import mapping
from bot.store.database import Database
from bot.store.tables import REQUESTS

# The ladder as its JSON text: a few rules make a few distinct ladders, parsed once each.
_LADDER = cast(REQUESTS.c.escalation, Text).label("ladder")


async def pending_timers(
    db: Database,
    *,
    since: datetime | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int = 5000,
) -> list[PendingTimer]:
    """Pending requests oldest first (by ``created_at``, then id): those created at or after
    ``since``, strictly after the ``(created_at, id)`` key ``after`` (the last row of the
    previous page)."""
    created: ColumnElement[Any]
    deadline: ColumnElement[Any]
    if db.engine.dialect.name == "sqlite":
        # SQLite keeps times as ISO text; ``fromisoformat`` reads it 10x faster than the
        # generic DateTime result processor (PostgreSQL's driver already returns datetimes).
        created, deadline = cast(REQUESTS.c.created_at, Text), cast(REQUESTS.c.deadline, Text)
    else:
        created, deadline = REQUESTS.c.created_at, REQUESTS.c.deadline
    query = select(
        REQUESTS.c.id,
        created.label("created_at"),
        deadline.label("deadline"),
        _LADDER,
        REQUESTS.c.steps_done,
    ).where(REQUESTS.c.status == Status.PENDING.value)
    if since is not None:
        query = query.where(REQUESTS.c.created_at >= utc(since))
    if after is not None:
        at, last = utc(after[0]), after[1]
        column = REQUESTS.c.created_at
        # ``created_at >= at`` first, so the (status, created_at) index bounds the scan
        query = query.where(
            column >= at, or_(column > at, and_(column == at, REQUESTS.c.id > last))
        )
    query = query.order_by(REQUESTS.c.created_at, REQUESTS.c.id).limit(limit)
    rows = await db.read(lambda conn: conn.execute(query).all())
    ladders: dict[str, tuple[EscalationStep, ...]] = {}
    timers = []
    for row in rows:
        ladder = ladders.get(row.ladder)
        if ladder is None:
            ladder = tuple(mapping.to_step(step) for step in json.loads(row.ladder))
            ladders[row.ladder] = ladder
        timers.append(
            PendingTimer(row.id, _time(row.created_at), _time(row.deadline), ladder, row.steps_done)
        )
    return timers


def _time(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        moment = datetime.fromisoformat(value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc(value)
