"""A long-poll woken by a decision made in this process takes the request as committed from
the wake-up instead of reading the store again; a wake-up that carries nothing (the change
feed: another process decided) re-reads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bot.domain import Approver, Platform, Request, Status, ToolCall, Verdict
from bot.service import Gate, Submission
from bot.store import SqlStore
from tests.fakes.clock import FakeClock
from tests.fakes.store import CountingStore
from tests.support import make_gate

ALICE = Approver(Platform.CONSOLE, "console", "alice", "Alice", via="console_login")
CALL = ToolCall("payments.transfer", {"amount": 25000}, "refund 8812")


async def _waiting(gate: Gate, seconds: float) -> tuple[Request, CountingStore, asyncio.Task[Any]]:
    agent, _ = await gate.register_agent("billing-agent")
    request, _ = await gate.submit(agent, Submission(CALL))
    inner = gate.store
    assert isinstance(inner, SqlStore)
    counting = CountingStore(inner)
    gate.store = counting
    poll = asyncio.ensure_future(gate.wait(request.id, agent, seconds))
    while counting.reads == 0:  # registered and read once
        await asyncio.sleep(0.001)
    return request, counting, poll


async def test_a_local_decision_hands_the_long_poll_the_committed_request(
    tmp_path: Path,
) -> None:
    gate = await make_gate(tmp_path, FakeClock())
    request, counting, poll = await _waiting(gate, 5)
    try:
        decided = await gate.decide(request.id, ALICE, Verdict.APPROVE, memberships={"finance"})
        reads_before = counting.reads
        answer = await asyncio.wait_for(poll, 5)
        assert answer.status is Status.APPROVED
        assert answer == decided == await counting.inner.get_request(request.id)
        assert counting.reads == reads_before  # the wake-up carried it: no read after
    finally:
        await counting.inner.close()


async def test_a_bare_wake_up_re_reads_the_store(tmp_path: Path) -> None:
    gate = await make_gate(tmp_path, FakeClock())
    request, counting, poll = await _waiting(gate, 30)
    try:
        gate.fanout.waiters.wake(request.id)  # what the change feed sends: only the id
        async with asyncio.timeout(5):
            while counting.reads < 2:
                await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)
        assert not poll.done()  # still pending: it waits on
    finally:
        poll.cancel()
        await counting.inner.close()
