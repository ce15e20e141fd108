"""The escalation step machine (``bot.escalation``) driven by a fake clock, without timers.

The store is a real ``SqlStore``, on a SQLite file in ``tmp_path`` and on a fresh schema of
the test PostgreSQL server (every test runs on both), so the compare-and-set claims and the
races between decisions, steps, expiry and suspension are the production ones on each.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql

from bench.serving import libpq, with_search_path
from bot import escalation
from bot.domain import Agent, Approver, Change, Event, Platform, Request, Status, ToolCall, Verdict
from bot.errors import Conflict
from bot.escalation import ladder, next_due, run_due_steps, settle_pages
from bot.evidence.statement import parse_statement
from bot.fanout import Fanout
from bot.ports import NoticeKind
from bot.service import Gate, Submission
from bot.store import SqlStore
from tests.fakes.channel import RecordingChannel
from tests.fakes.clock import FakeClock
from tests.fakes.pager import FakePager
from tests.pg_cluster import admin_url
from tests.support import make_gate

ALICE = Approver(Platform.CONSOLE, "console", "alice", "Alice", via="console_login")


@dataclass
class World:
    gate: Gate
    clock: FakeClock
    channel: RecordingChannel
    pager: FakePager
    agent: Agent
    url: str
    home: Path

    async def another_gate(self, fanout: Fanout) -> Gate:
        """A second process on the same home and database."""
        store = await SqlStore.open(self.url, clock=self.clock)
        return await make_gate(self.home, self.clock, store=store, fanout=fanout)

    async def submit(self, tool: str = "payments.transfer") -> Request:
        call = ToolCall(tool, {"amount": 25000, "secret_note": "do-not-page"}, "refund 8812")
        request, _ = await self.gate.submit(self.agent, Submission(call))
        assert request.status is Status.PENDING
        return request

    async def events(self, request_id: str) -> list[dict[str, Any]]:
        """The predicates of the request's attestations, oldest first."""
        out = []
        for entry in await self.gate.store.log_entries_for(request_id):
            envelope = json.loads(entry.envelope)
            out.append(parse_statement(base64.b64decode(envelope["payload"]))["predicate"])
        return out

    async def settle(self) -> None:
        await asyncio.sleep(0)  # let the gate's background deliveries start
        await self.gate.drain()
        await settle_pages()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh schema on the test PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'signoff.db'}"
        return
    admin = admin_url()
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(libpq(admin), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield with_search_path(admin, schema)
    finally:
        with psycopg.connect(libpq(admin), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest_asyncio.fixture
async def world(tmp_path: Path, database: str) -> AsyncIterator[World]:
    clock = FakeClock()
    channel, pager = RecordingChannel(), FakePager()
    store = await SqlStore.open(database, clock=clock)
    gate = await make_gate(
        tmp_path, clock, store=store, fanout=Fanout(channels=[channel], pager=pager)
    )
    agent, _ = await gate.register_agent("billing-agent")
    try:
        yield World(gate, clock, channel, pager, agent, database, tmp_path)
    finally:
        await gate.drain()
        await gate.store.close()


async def test_steps_run_in_order_each_at_its_offset(world: World) -> None:
    request = await world.submit()
    created = request.created_at
    assert [s.after for s in request.escalation] == [timedelta(seconds=s) for s in (2, 4, 6)]
    assert request.deadline == created + timedelta(seconds=6)

    world.clock.advance(1.9)
    progress = await run_due_steps(world.gate, request.id)
    assert progress.ran == () and progress.next_due == created + timedelta(seconds=2)

    world.clock.advance(0.1)
    progress = await run_due_steps(world.gate, request.id)
    await world.settle()
    assert [r.index for r in progress.ran] == [0]
    assert progress.next_due == created + timedelta(seconds=4)
    assert world.channel.kinds() == [NoticeKind.REMINDER]
    reminded = world.channel.notices[-1]
    assert reminded.groups == ("finance",) and reminded.request.steps_done == 1
    assert world.pager.triggered == []

    world.clock.advance(2)
    progress = await run_due_steps(world.gate, request.id)
    await world.settle()
    assert [r.index for r in progress.ran] == [1]
    current = await world.gate.get(request.id)
    assert current.extra_groups == ("leads",) and current.approver_groups == ("finance", "leads")
    assert world.channel.kinds() == [NoticeKind.REMINDER, NoticeKind.ESCALATED, NoticeKind.PAGE]
    escalated = world.channel.notices[-2]
    assert escalated.groups == ("leads",)
    assert [rid for rid, _ in world.pager.triggered] == [request.id]
    summary = world.pager.triggered[0][1]
    assert "payments.transfer" in summary and "do-not-page" not in summary
    assert world.gate.metrics.pages.labels("sent")._value.get() == 1

    world.clock.advance(1.999)
    assert (await run_due_steps(world.gate, request.id)).ran == ()
    world.clock.advance(0.001)
    progress = await run_due_steps(world.gate, request.id)
    await world.settle()
    assert [(r.index, r.deny) for r in progress.ran] == [(2, True)]
    assert progress.next_due is None
    final = await world.gate.get(request.id)
    assert final.status is Status.EXPIRED
    assert final.decided_at == created + timedelta(seconds=6)
    assert world.channel.kinds()[-1] is NoticeKind.DECIDED
    assert world.pager.resolved == [request.id]

    events = await world.events(request.id)
    assert [e["decision"] for e in events] == ["escalated", "escalated", "expired"]
    assert [e["detail"]["step"] for e in events[:2]] == [0, 1]
    assert events[1]["detail"] == {
        "step": 1,
        "after_seconds": 4.0,
        "remind": False,
        "to": "leads",
        "page": True,
    }
    assert events[2]["final"] is True and events[2]["status"] == "expired"


async def test_steps_due_during_downtime_all_run_at_once_in_order(world: World) -> None:
    request = await world.submit()
    world.clock.advance(60)  # signoff was down for a minute
    progress = await run_due_steps(world.gate, request.id)
    await world.settle()
    created = request.created_at
    assert [r.index for r in progress.ran] == [0, 1, 2]
    assert [r.due - created for r in progress.ran] == [timedelta(seconds=s) for s in (2, 4, 6)]
    assert world.channel.kinds() == [
        NoticeKind.REMINDER,
        NoticeKind.ESCALATED,
        NoticeKind.PAGE,
        NoticeKind.DECIDED,
    ]
    events = await world.events(request.id)
    assert [e["decision"] for e in events] == ["escalated", "escalated", "expired"]
    # each attestation chains to the previous one of the request
    entries = await world.gate.store.log_entries_for(request.id)
    assert [e["previous_log_index"] for e in events] == [None, entries[0].index, entries[1].index]


async def test_a_rule_without_steps_denies_at_its_sla(world: World) -> None:
    request = await world.submit("db.delete")
    assert len(ladder(request)) == 1 and ladder(request)[0].deny
    assert next_due(request) == request.created_at + timedelta(seconds=3)
    world.clock.advance(2.5)
    assert (await run_due_steps(world.gate, request.id)).ran == ()
    world.clock.advance(0.5)
    await run_due_steps(world.gate, request.id)
    assert (await world.gate.get(request.id)).status is Status.EXPIRED
    assert [e["decision"] for e in await world.events(request.id)] == ["expired"]


async def test_concurrent_runners_never_run_a_step_twice(world: World) -> None:
    request = await world.submit()
    world.clock.advance(4)
    results = await asyncio.gather(*(run_due_steps(world.gate, request.id) for _ in range(6)))
    await world.settle()
    ran = sorted(r.index for p in results for r in p.ran)
    assert ran == [0, 1]
    assert world.channel.kinds().count(NoticeKind.REMINDER) == 1
    assert world.channel.kinds().count(NoticeKind.ESCALATED) == 1
    assert len(world.pager.triggered) == 1
    world.clock.advance(2)
    results = await asyncio.gather(*(run_due_steps(world.gate, request.id) for _ in range(6)))
    assert sum(len(p.ran) for p in results) == 1
    decisions = [e["decision"] for e in await world.events(request.id)]
    assert decisions == ["escalated", "escalated", "expired"]


async def test_two_gates_on_one_database_run_each_step_once(world: World, tmp_path: Path) -> None:
    other_channel = RecordingChannel()
    # a second process on the same database
    other = await world.another_gate(Fanout(channels=[other_channel]))
    try:
        request = await world.submit()
        world.clock.advance(10)
        results = await asyncio.gather(
            run_due_steps(world.gate, request.id), run_due_steps(other, request.id)
        )
        await world.settle()
        await other.drain()
        assert sorted(r.index for p in results for r in p.ran) == [0, 1, 2]
        kinds = world.channel.kinds() + other_channel.kinds()
        assert sorted(kinds) == sorted(
            [NoticeKind.REMINDER, NoticeKind.ESCALATED, NoticeKind.PAGE, NoticeKind.DECIDED]
        )
        decisions = [e["decision"] for e in await world.events(request.id)]
        assert decisions == ["escalated", "escalated", "expired"]
    finally:
        await other.store.close()


class RacingStore:
    """Wraps a store so that, just before the first commit of ``event`` (by default the
    step's ``escalated``), ``before`` runs: the other party lands between this one's read
    and its commit."""

    def __init__(
        self, inner: SqlStore, before: Callable[[], Any], event: Event = Event.ESCALATED
    ) -> None:
        self.inner = inner
        self.before = before
        self.event = event
        self.raced = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit(self, change: Change) -> Request:
        if change.event is self.event and not self.raced:
            self.raced = True
            await self.before()
        return await self.inner.commit(change)


async def test_a_decision_racing_a_step_wins_and_the_step_never_acts(world: World) -> None:
    request = await world.submit()
    inner = world.gate.store
    assert isinstance(inner, SqlStore)

    async def approve() -> None:
        world.gate.store = inner
        await world.gate.decide(request.id, ALICE, Verdict.APPROVE, memberships={"finance"})

    racing = RacingStore(inner, approve)
    world.gate.store = racing
    world.clock.advance(5)
    progress = await run_due_steps(world.gate, request.id)
    world.gate.store = inner
    await world.settle()
    assert racing.raced
    assert progress.ran == () and progress.next_due is None
    assert (await world.gate.get(request.id)).status is Status.APPROVED
    assert NoticeKind.REMINDER not in world.channel.kinds()
    assert world.pager.triggered == []
    assert [e["decision"] for e in await world.events(request.id)] == ["approved"]


async def test_a_step_that_wins_the_race_leaves_the_decision_to_retry(world: World) -> None:
    request = await world.submit()
    world.clock.advance(2)
    inner = world.gate.store
    assert isinstance(inner, SqlStore)
    steps: list[Any] = []

    async def step_first() -> None:
        # the step lands between the decision's read and its commit (forced, not hoped for)
        world.gate.store = inner
        steps.append(await run_due_steps(world.gate, request.id))

    racing = RacingStore(inner, step_first, event=Event.DENIED)
    world.gate.store = racing
    decided = await world.gate.decide(
        request.id, ALICE, Verdict.DENY, "not today", memberships={"finance"}
    )
    world.gate.store = inner
    assert racing.raced and len(steps) == 1
    assert decided.status is Status.DENIED
    assert len(steps[0].ran) == 1
    decisions = [e["decision"] for e in await world.events(request.id)]
    assert decisions == ["escalated", "denied"]
    world.clock.advance(10)
    assert (await run_due_steps(world.gate, request.id)).ran == ()
    assert (await world.gate.get(request.id)).status is Status.DENIED


@pytest.mark.parametrize(
    ("racer", "status", "event"),
    [
        ("approve", Status.APPROVED, "approved"),
        ("cancel", Status.CANCELLED, "cancelled"),
        ("suspend", Status.DENIED, "denied"),
    ],
)
async def test_whatever_lands_before_the_expiry_commits_wins_it(
    world: World, racer: str, status: Status, event: str
) -> None:
    """A decision, the agent's cancel or its suspension landing between the expiry's read and
    its commit (forced, not hoped for): that one is the final state, the expiry never is."""
    request = await world.submit()
    inner = world.gate.store
    assert isinstance(inner, SqlStore)

    async def land() -> None:
        world.gate.store = inner
        if racer == "approve":
            await world.gate.decide(request.id, ALICE, Verdict.APPROVE, memberships={"finance"})
        elif racer == "cancel":
            await world.gate.cancel(request.id, world.agent)
        else:
            await world.gate.suspend_agent(world.agent.id)

    racing = RacingStore(inner, land, event=Event.EXPIRED)
    world.gate.store = racing
    world.clock.advance(6)
    progress = await run_due_steps(world.gate, request.id)
    world.gate.store = inner
    await world.settle()
    assert racing.raced
    assert [r.index for r in progress.ran] == [0, 1]  # the deny step lost
    assert (await world.gate.get(request.id)).status is status
    decisions = [e["decision"] for e in await world.events(request.id)]
    assert decisions == ["escalated", "escalated", event]
    world.clock.advance(60)
    assert (await run_due_steps(world.gate, request.id)).ran == ()


async def test_a_failed_page_still_escalates_and_denies_on_time(world: World) -> None:
    world.pager.fail = True
    request = await world.submit()
    world.clock.advance(4)
    await run_due_steps(world.gate, request.id)
    await world.settle()
    assert world.gate.metrics.pages.labels("failed")._value.get() == 1
    assert world.channel.kinds() == [NoticeKind.REMINDER, NoticeKind.ESCALATED, NoticeKind.PAGE]
    assert (await world.gate.get(request.id)).extra_groups == ("leads",)
    world.clock.advance(2)
    await run_due_steps(world.gate, request.id)
    final = await world.gate.get(request.id)
    assert final.status is Status.EXPIRED
    assert final.decided_at == request.created_at + timedelta(seconds=6)


async def test_a_slow_pager_does_not_hold_up_the_ladder(world: World, tmp_path: Path) -> None:
    release = asyncio.Event()

    class SlowPager(FakePager):
        async def trigger(self, request: Request, summary: str) -> None:
            await release.wait()

    # the same database, another gate: one whose pager is slow
    slow = replace(world, gate=await world.another_gate(Fanout(pager=SlowPager())))
    request = await slow.submit()
    world.clock.advance(6)
    progress = await asyncio.wait_for(run_due_steps(slow.gate, request.id), timeout=5)
    assert [r.index for r in progress.ran] == [0, 1, 2]
    assert (await slow.gate.get(request.id)).status is Status.EXPIRED
    release.set()
    await settle_pages()
    await slow.gate.drain()
    await slow.gate.store.close()
    assert not escalation._paging


async def test_final_and_unknown_requests_run_nothing(world: World) -> None:
    request = await world.submit()
    await world.gate.decide(request.id, ALICE, Verdict.APPROVE, memberships={"finance"})
    world.clock.advance(60)
    progress = await run_due_steps(world.gate, request.id)
    assert progress.ran == () and progress.next_due is None
    assert (await run_due_steps(world.gate, "no-such-request")).ran == ()
    assert next_due(await world.gate.get(request.id)) is None


async def test_a_request_denied_by_suspension_runs_no_more_steps(world: World) -> None:
    request = await world.submit()
    world.clock.advance(2)
    await run_due_steps(world.gate, request.id)
    await world.gate.suspend_agent(world.agent.id)
    world.clock.advance(10)
    assert (await run_due_steps(world.gate, request.id)).ran == ()
    decisions = [e["decision"] for e in await world.events(request.id)]
    assert decisions == ["escalated", "denied"]


@pytest.mark.parametrize("steps_done", [0, 1, 2])
async def test_next_due_follows_steps_done(world: World, steps_done: int) -> None:
    from dataclasses import replace

    request = replace(await world.submit(), steps_done=steps_done)
    assert next_due(request) == request.created_at + timedelta(seconds=2 * (steps_done + 1))


async def test_a_conflict_storm_raises_instead_of_spinning(world: World) -> None:
    request = await world.submit()
    inner = world.gate.store
    assert isinstance(inner, SqlStore)

    class AlwaysStale:
        def __getattr__(self, name: str) -> Any:
            return getattr(inner, name)

        async def commit(self, change: Change) -> Request:
            raise Conflict("changed concurrently")

    world.gate.store = AlwaysStale()
    world.clock.advance(2)
    try:
        with pytest.raises(Conflict):
            await run_due_steps(world.gate, request.id)
    finally:
        world.gate.store = inner


async def test_escalate_early_runs_the_next_step_but_never_the_deny(world: World) -> None:
    request = await world.submit()
    ran = await escalation.escalate_early(world.gate, request.id)
    await world.settle()
    assert ran is not None and ran.index == 0 and not ran.deny
    assert world.channel.kinds() == [NoticeKind.REMINDER]
    assert (await escalation.escalate_early(world.gate, request.id)) is not None  # step 1
    # only the deny is left: it keeps its time and the request stays pending
    assert await escalation.escalate_early(world.gate, request.id) is None
    current = await world.gate.get(request.id)
    assert current.status is Status.PENDING and current.steps_done == 2
    # the timer later finds the early steps done and runs only the deny, on time
    world.clock.advance(5.9)
    assert (await run_due_steps(world.gate, request.id)).ran == ()
    world.clock.advance(0.1)
    progress = await run_due_steps(world.gate, request.id)
    assert [(r.index, r.deny) for r in progress.ran] == [(2, True)]
