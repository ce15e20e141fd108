"""The escalation timers' bulk read (``bot.store.timers``) on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Unpack

from bot.domain import EscalationStep, PolicyRef, Request, Status
from bot.store import SqlStore
from bot.store.timers import pending_timers
from tests.factories import Changes, changed, make_request

T0 = datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=UTC)
LADDER = (
    EscalationStep(timedelta(seconds=2), remind=True),
    EscalationStep(timedelta(seconds=4), to="leads", page=True),
    EscalationStep(timedelta(seconds=6), deny=True),
)


def request(n: int, created: datetime, **changes: Unpack[Changes]) -> Request:
    base = make_request(
        f"req-{n:04d}",
        agent_id="agent",
        arguments={"amount": n},
        policy=PolicyRef("sha256:" + "0" * 64, "1", "rule"),
        created_at=created,
        arguments_sha256="a" * 64,
        call_sha256="c" * 64,
        escalation=LADDER,
        deadline=created + timedelta(seconds=6),
    )
    return changed(base, **changes)


async def test_pages_by_created_at_and_id_without_skips_or_repeats(store: SqlStore) -> None:
    # ties on created_at straddle the page boundaries
    for n in range(23):
        await store.insert_request(request(n, T0 + timedelta(seconds=n // 5), steps_done=n % 3))
    await store.insert_request(request(99, T0, status=Status.APPROVED))
    seen = []
    after = None
    while True:
        page = await pending_timers(store, after=after, limit=4)
        seen.extend(page)
        if len(page) < 4:
            break
        after = (page[-1].created_at, page[-1].id)
    assert [t.id for t in seen] == [f"req-{n:04d}" for n in range(23)]
    first = seen[7]
    assert first.created_at == T0 + timedelta(seconds=1)
    assert first.deadline == first.created_at + timedelta(seconds=6)
    assert first.escalation == LADDER and first.steps_done == 1


async def test_since_keeps_only_newer_requests(store: SqlStore) -> None:
    for n in range(6):
        await store.insert_request(request(n, T0 + timedelta(minutes=n)))
    newer = await pending_timers(store, since=T0 + timedelta(minutes=4))
    assert [t.id for t in newer] == ["req-0004", "req-0005"]
