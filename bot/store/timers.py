"""The bulk read behind the escalation timers: every pending request's schedule, cheaply.

Rebuilding 100,000 timers at start must take seconds, so this reads only the five columns a
timer needs (not the whole request with its JSON arguments and context) and pages by
``(created_at, id)`` (a keyset, so no page skips or repeats rows while others change
status). It uses the public ``Database.read`` like ``bot.store.users``. Raises
``StoreError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select

from bot.domain import EscalationStep, Status, utc
from bot.store import mapping
from bot.store.database import Database
from bot.store.tables import REQUESTS

_COLUMNS = (
    REQUESTS.c.id,
    REQUESTS.c.created_at,
    REQUESTS.c.deadline,
    REQUESTS.c.escalation,
    REQUESTS.c.steps_done,
)


@dataclass(frozen=True, slots=True)
class PendingTimer:
    """What the scheduler needs of one pending request."""

    id: str
    created_at: datetime
    deadline: datetime | None
    escalation: tuple[EscalationStep, ...]
    steps_done: int


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
    query = select(*_COLUMNS).where(REQUESTS.c.status == Status.PENDING.value)
    if since is not None:
        query = query.where(REQUESTS.c.created_at >= utc(since))
    if after is not None:
        at, last = utc(after[0]), after[1]
        created = REQUESTS.c.created_at
        query = query.where(or_(created > at, and_(created == at, REQUESTS.c.id > last)))
    query = query.order_by(REQUESTS.c.created_at, REQUESTS.c.id).limit(limit)
    rows = await db.read(lambda conn: conn.execute(query).all())
    to_step = mapping.to_step
    return [
        PendingTimer(
            row.id,
            utc(row.created_at),
            None if row.deadline is None else utc(row.deadline),
            tuple(to_step(step) for step in row.escalation),
            row.steps_done,
        )
        for row in rows
    ]
