"""``bot.scheduler``: the APScheduler driver over the step machine.

The Gate runs on a ``FakeClock``. APScheduler keeps real time, so each test puts the fake
clock either a day ahead of the wall clock (timers never fire by themselves; the test fires
them) or an hour behind it (every timer is overdue and fires as soon as the scheduler
starts). No sleeps: tests wait on the scheduler's observer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio

from adapters.escalation import mount
from bot.domain import Approver, Platform, Request, Status, ToolCall, Verdict
from bot.errors import StoreError
from bot.escalation import StepRun
from bot.fanout import Fanout
from bot.scheduler import Scheduler
from bot.service import Gate, Submission
from tests.fakes.channel import RecordingChannel
from tests.fakes.clock import FakeClock
from tests.support import make_gate

ALICE = Approver(Platform.CONSOLE, "console", "alice", "Alice", via="console_login")
AHEAD = timedelta(days=1)
BEHIND = -timedelta(hours=1)


class Harness:
    def __init__(self, gate: Gate, clock: FakeClock) -> None:
        self.gate = gate
        self.clock = clock
        self.runs: list[tuple[str, StepRun]] = []
        self.changed = asyncio.Event()
        self.scheduler = Scheduler(gate, observer=self.observe, retry_after=5.0)

    def observe(self, request_id: str, run: StepRun) -> None:
        self.runs.append((request_id, run))
        self.changed.set()

    async def until(self, done: Any, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                self.changed.clear()
                await self.changed.wait()

    async def submit(self, tool: str = "payments.transfer") -> Request:
        agent = await self.gate.store.get_agent("billing-agent")
        if agent is None:
            agent, _ = await self.gate.register_agent("billing-agent")
        request, _ = await self.gate.submit(agent, Submission(ToolCall(tool, {"amount": 1})))
        return request


async def harness(tmp_path: Path, offset: timedelta) -> Harness:
    clock = FakeClock(datetime.now(UTC) + offset)
    gate = await make_gate(tmp_path, clock, fanout=Fanout(channels=[RecordingChannel()]))
    return Harness(gate, clock)


@pytest_asyncio.fixture
async def ahead(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await harness(tmp_path, AHEAD)
    try:
        yield h
    finally:
        h.scheduler.shutdown()
        await h.gate.drain()
        await h.gate.store.close()


async def test_start_rebuilds_one_timer_per_pending_request_at_its_next_step(
    ahead: Harness,
) -> None:
    fresh = await ahead.submit()
    quiet = await ahead.submit("db.delete")
    decided = await ahead.submit()
    await ahead.gate.decide(decided.id, ALICE, Verdict.APPROVE, memberships={"finance"})
    ahead.clock.advance(2)
    from bot.escalation import run_due_steps

    await run_due_steps(ahead.gate, fresh.id)  # step 0 ran before the restart

    assert await ahead.scheduler.start() == 2
    assert ahead.scheduler.count() == 2
    assert ahead.scheduler.due(fresh.id) == fresh.created_at + timedelta(seconds=4)
    assert ahead.scheduler.due(quiet.id) == quiet.created_at + timedelta(seconds=3)
    assert ahead.scheduler.due(decided.id) is None


async def test_firing_runs_the_step_and_schedules_the_next(ahead: Harness) -> None:
    request = await ahead.submit()
    await ahead.scheduler.start()
    ahead.clock.advance(2)
    await ahead.scheduler.fire(request.id)
    assert [run.index for _, run in ahead.runs] == [0]
    assert ahead.scheduler.due(request.id) == request.created_at + timedelta(seconds=4)
    ahead.clock.advance(4)
    await ahead.scheduler.fire(request.id)
    assert [run.index for _, run in ahead.runs] == [0, 1, 2]
    assert ahead.scheduler.due(request.id) is None
    assert (await ahead.gate.get(request.id)).status is Status.EXPIRED


async def test_deciding_removes_the_timer_and_a_late_job_does_nothing(ahead: Harness) -> None:
    ahead.gate.fanout.connect(final_listeners=[ahead.scheduler.on_final])
    request = await ahead.submit()
    await ahead.scheduler.start()
    assert ahead.scheduler.due(request.id) is not None
    await ahead.gate.decide(request.id, ALICE, Verdict.APPROVE, memberships={"finance"})
    await ahead.gate.drain()  # final listeners run in the background
    assert ahead.scheduler.due(request.id) is None
    ahead.clock.advance(60)
    await ahead.scheduler.fire(request.id)  # a job that fired anyway
    assert ahead.runs == []
    assert ahead.scheduler.due(request.id) is None
    assert (await ahead.gate.get(request.id)).status is Status.APPROVED


async def test_the_sweep_picks_up_requests_created_elsewhere(
    ahead: Harness, tmp_path: Path
) -> None:
    await ahead.scheduler.start()
    other = await make_gate(tmp_path, ahead.clock)  # another process, same database
    try:
        agent, _ = await other.register_agent("other-agent")
        created, _ = await other.submit(agent, Submission(ToolCall("payments.transfer", {})))
    finally:
        await other.store.close()
    assert ahead.scheduler.due(created.id) is None
    assert await ahead.scheduler.sweep() == 1
    assert ahead.scheduler.due(created.id) == created.created_at + timedelta(seconds=2)
    assert await ahead.scheduler.sweep() == 0  # already known


async def test_an_exception_in_one_job_is_retried_and_never_stops_the_others(
    ahead: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = await ahead.submit()
    healthy = await ahead.submit()
    await ahead.scheduler.start()
    real_get = ahead.gate.store.get_request

    async def flaky_get(request_id: str) -> Request | None:
        if request_id == broken.id:
            raise StoreError("database unreachable")
        return await real_get(request_id)

    monkeypatch.setattr(ahead.gate.store, "get_request", flaky_get)
    ahead.clock.advance(2)
    await ahead.scheduler.fire(broken.id)  # logged, not raised
    assert ahead.scheduler.due(broken.id) == ahead.clock.now() + timedelta(seconds=5)
    await ahead.scheduler.fire(healthy.id)
    assert [(rid, run.index) for rid, run in ahead.runs] == [(healthy.id, 0)]
    monkeypatch.undo()  # the store is back
    await ahead.scheduler.fire(broken.id)  # the step runs
    assert [(rid, run.index) for rid, run in ahead.runs][-1] == (broken.id, 0)


async def test_overdue_timers_fire_at_start_in_order(tmp_path: Path) -> None:
    h = await harness(tmp_path, BEHIND)
    try:
        first = await h.submit()
        h.clock.advance(1)
        second = await h.submit("db.delete")
        h.clock.advance(30)  # down for half a minute: everything is overdue
        await h.scheduler.start()
        await h.until(lambda: sum(run.deny for _, run in h.runs) == 2)
        mine = [run.index for rid, run in h.runs if rid == first.id]
        assert mine == [0, 1, 2]
        assert [run.index for rid, run in h.runs if rid == second.id] == [0]
        for request in (first, second):
            assert (await h.gate.get(request.id)).status is Status.EXPIRED
        assert h.scheduler.count() == 0
    finally:
        h.scheduler.shutdown()
        await h.gate.drain()
        await h.gate.store.close()


async def test_mount_returns_the_listeners_and_the_leader_job(
    tmp_path: Path,
) -> None:
    h = await harness(tmp_path, AHEAD)
    try:
        # the scheduler's mount reads only wiring.gate
        mounted = mount(SimpleNamespace(gate=h.gate))  # type: ignore[arg-type]
        scheduler = mounted.part
        assert mounted.final_listeners == (scheduler.on_final,)
        assert mounted.created_listeners == (scheduler.on_created,)
        # no job of its own: the scheduler's loop runs while this process leads
        assert mounted.jobs == () and mounted.leader_jobs == (scheduler.run,)
        request = await h.submit()
        task = asyncio.create_task(scheduler.run())
        async with asyncio.timeout(10):
            while scheduler.due(request.id) is None:
                await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert not scheduler._aps.running
    finally:
        await h.gate.drain()
        await h.gate.store.close()


async def test_steps_beyond_the_horizon_wait_and_become_jobs_in_time(ahead: Harness) -> None:
    scheduler = ahead.scheduler
    await scheduler.start()
    scheduler.horizon = timedelta(hours=1)
    now = datetime.now(UTC)
    scheduler.schedule("far", now + timedelta(hours=2))
    scheduler.schedule("near", now + timedelta(minutes=30))
    scheduler.schedule("gone", now + timedelta(hours=2))
    scheduler.schedule("moved", now + timedelta(hours=2))
    scheduler.schedule("moved", now + timedelta(hours=3))  # the first entry is now stale
    scheduler.forget("gone")
    assert scheduler._aps.get_job("near") is not None
    assert scheduler._aps.get_job("far") is None
    assert scheduler.due("far") == now + timedelta(hours=2)
    assert scheduler.due("gone") is None
    assert scheduler.count() == 3

    assert scheduler.promote() == 0  # nothing came within the hour yet
    scheduler.horizon = timedelta(hours=2, minutes=30)  # as if 30 minutes went by
    assert scheduler.promote() == 1
    assert scheduler._aps.get_job("far") is not None and scheduler._aps.get_job("gone") is None
    assert scheduler.due("far") == now + timedelta(hours=2)
    assert scheduler.due("moved") == now + timedelta(hours=3)
    scheduler.horizon = timedelta(hours=4)
    assert scheduler.promote() == 1
    assert scheduler.due("moved") == now + timedelta(hours=3)
    assert scheduler._later == {} and scheduler.count() == 3


async def test_a_near_step_replaces_a_later_one(ahead: Harness) -> None:
    scheduler = ahead.scheduler
    scheduler.horizon = timedelta(hours=1)
    now = datetime.now(UTC)
    scheduler.schedule("r", now + timedelta(hours=2))
    scheduler.schedule("r", now + timedelta(minutes=5))
    assert scheduler.due("r") == now + timedelta(minutes=5)
    scheduler.horizon = timedelta(hours=3)
    assert scheduler.promote() == 0  # the stale later entry is skipped
    scheduler.schedule("r", now + timedelta(hours=5))  # and back beyond the horizon
    assert scheduler._aps.get_job("r") is None
    assert scheduler.due("r") == now + timedelta(hours=5)
