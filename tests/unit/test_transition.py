"""``Gate._transition``, the one door for state changes: a step that keeps losing the
compare-and-set is re-run on a fresh read ``CAS_RETRIES`` times, then refused with
``Conflict``; a step that does not move the request one version on is refused before the
store sees it. Nothing is committed or published meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from bot.domain import (
    Approver,
    Change,
    Event,
    Platform,
    Request,
    Status,
    ToolCall,
    Verdict,
    Vote,
)
from bot.errors import Conflict, StoreError
from bot.fanout import Fanout
from bot.service import Submission
from bot.store import SqlStore
from bot.transition import CAS_RETRIES, Transition
from tests.fakes.channel import RecordingChannel
from tests.fakes.clock import FakeClock
from tests.fakes.store import CountingStore
from tests.support import make_gate

ALICE = Approver(Platform.CONSOLE, "console", "alice", "Alice", via="console_login")


class AlwaysRacedStore(CountingStore):
    """Wraps a store so that every commit loses the compare-and-set, counting the reads and
    the attempts."""

    def __init__(self, inner: SqlStore) -> None:
        super().__init__(inner)
        self.commits = 0

    async def commit(self, change: Change) -> Request:
        self.commits += 1
        raise Conflict("stale version")


async def test_a_step_that_keeps_losing_gives_up_after_cas_retries(tmp_path: Path) -> None:
    channel = RecordingChannel()
    gate = await make_gate(tmp_path, FakeClock(), fanout=Fanout(channels=[channel]))
    agent, _ = await gate.register_agent("billing-agent")
    call = ToolCall("payments.transfer", {"amount": 25000}, "refund 8812")
    request, _ = await gate.submit(agent, Submission(call))
    inner = gate.store
    assert isinstance(inner, SqlStore)
    raced = AlwaysRacedStore(inner)
    gate.store = raced
    try:
        with pytest.raises(Conflict, match="changing too fast"):
            await gate.decide(request.id, ALICE, Verdict.APPROVE, memberships={"finance"})
    finally:
        gate.store = inner
    assert raced.commits == CAS_RETRIES
    assert raced.reads == CAS_RETRIES  # each attempt re-read the request first
    await asyncio.sleep(0)
    await gate.drain()
    assert channel.kinds() == []  # a change never committed is never published
    stored = await gate.get(request.id)
    assert stored.status is Status.PENDING and stored.version == request.version
    assert len(await gate.log_entries_for(request.id)) == 0
    await inner.close()


async def test_a_step_that_does_not_move_the_version_commits_nothing(tmp_path: Path) -> None:
    gate = await make_gate(tmp_path, FakeClock())
    agent, _ = await gate.register_agent("billing-agent")
    call = ToolCall("payments.transfer", {"amount": 25000}, "refund 8812")
    request, _ = await gate.submit(agent, Submission(call))

    def stale(before: Request, votes: Sequence[Vote], now: datetime) -> Transition:
        after = replace(before, status=Status.EXPIRED, decided_at=now, reason="late")
        return Transition(after, Event.EXPIRED, reason="late")

    with pytest.raises(StoreError, match="one version on"):
        await gate._transition(request.id, stale)
    stored = await gate.get(request.id)
    assert stored.status is Status.PENDING and stored.version == request.version
    assert await gate.log_entries_for(request.id) == []
    await gate.store.close()
