"""A delivery owed outlives the process that owed it: a final request's callback (SPEC §6
``callback_url``) and a new request's cards (SPEC §8).

The transaction that owes one records it (``deliveries_owed``); the process holding it
delivers and forgets it; when that process stops before it is done (killed, or a shutdown
whose grace ran out), its hold runs out and another process takes it over (a callback with
the attempts left). Before this, both were lost with the process: the retries and the
posting lived in its memory only. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from adapters.callbacks import HOLD_MARGIN, CallbackSender
from bot.domain import DELIVERY_HOLD, Delivery, Outcome, Request, ToolCall
from bot.domain import Agent as AgentRecord
from bot.fanout import Fanout
from bot.ports import ApprovalChannel, Notice, NoticeKind
from bot.service import ANNOUNCE_ATTEMPTS, Gate, Submission
from bot.store import SqlStore
from tests.fakes.channel import RecordingChannel
from tests.fakes.clock import FakeClock
from tests.support import make_gate, until

POLICY = """\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {name: callbacks, version: "c1"}
groups:
  finance: {console: {users: [alice]}}
defaults:
  unknown_tool: confirm
  sla: 15m
  approvers: {groups: [finance]}
rules:
  - name: reads
    tool: crm.read
    tier: auto
  - name: transfers
    tool: payments.transfer
    tier: confirm
    approvers: {groups: [finance]}
"""
FAR = timedelta(days=1)


class Receiver:
    """An agent's callback endpoint: answers the statuses it is given, then 200."""

    def __init__(self, *answers: int) -> None:
        self.answers = list(answers)
        self.seen: list[str] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _hook(self, request: web.Request) -> web.Response:
        self.seen.append(request.headers["webhook-id"])
        return web.Response(status=self.answers.pop(0) if self.answers else 200)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def gate_with(
    tmp_path: Path, store: SqlStore, clock: FakeClock, channel: ApprovalChannel | None = None
) -> Gate:
    """A process's gate on ``store`` (with ``channel`` its one approval channel)."""
    (tmp_path / "policy.yaml").write_text(POLICY, encoding="utf-8")
    fanout = Fanout(channels=[channel]) if channel is not None else None
    return await make_gate(tmp_path, clock, store=store, fanout=fanout)


@pytest_asyncio.fixture
async def gate(tmp_path: Path, store: SqlStore) -> Gate:
    return await gate_with(tmp_path, store, FakeClock())


@pytest_asyncio.fixture
async def elsewhere(tmp_path: Path, store: SqlStore, gate: Gate) -> Gate:
    """Another process's gate on the same database (its own fan-out and metrics)."""
    return await make_gate(tmp_path, gate.clock, store=store)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    await hook.start()
    try:
        yield hook
    finally:
        await hook.stop()


def sender_of(gate: Gate, *, sleep: object = None) -> CallbackSender:
    """A process's callback sender (short real waits unless ``sleep`` is given)."""
    sender = CallbackSender(gate, allow_private_networks=True, delays=(0.01, 0.01), timeout=5)
    if sleep is not None:
        sender.sleep = sleep  # type: ignore[assignment]
    return sender


async def submit(gate: Gate, tool: str, url: str | None) -> tuple[AgentRecord, Request]:
    agent = await gate.agent("agent")
    if agent is None:
        agent, _ = await gate.register_agent("agent")
    request, _ = await gate.submit(agent, Submission(ToolCall(tool, {"id": 1}), callback_url=url))
    return agent, request


async def owed(gate: Gate, later: timedelta = FAR, kind: Delivery = Delivery.CALLBACK) -> list[str]:
    """The ids of the requests owing a ``kind`` nobody holds ``later`` from now."""
    due = await gate.store.deliveries_due(kind, gate.now() + later, 100)
    return [o.request_id for o in due]


async def test_a_request_final_at_submission_owes_its_callback_until_it_is_delivered(
    gate: Gate, receiver: Receiver
) -> None:
    _, request = await submit(gate, "crm.read", receiver.url)
    assert request.status.final
    assert await owed(gate) == [request.id]
    assert await owed(gate, timedelta(0)) == []  # held by the process that made it final
    assert await owed(gate, DELIVERY_HOLD) == [request.id]  # ... until its hold runs out
    sender = sender_of(gate)
    try:
        assert await sender.deliver(request)
    finally:
        await sender.close()
    assert receiver.seen == [f"{request.id}.approved"]
    assert await owed(gate) == []


async def test_a_request_owes_a_callback_once_when_it_becomes_final_and_only_with_a_url(
    gate: Gate, receiver: Receiver
) -> None:
    agent, pending = await submit(gate, "payments.transfer", receiver.url)
    _, without = await submit(gate, "crm.read", None)
    assert without.status.final
    assert await owed(gate) == []  # pending: nothing owed yet; no URL: nothing ever
    await gate.cancel(pending.id, agent)
    assert await owed(gate) == [pending.id]
    # a final request that changes again (its grant used) owes nothing more, and the change
    # is not refused for it
    _, auto = await submit(gate, "crm.read", receiver.url)
    assert auto.grant is not None
    await gate.settle_delivery(auto.id, Delivery.CALLBACK)
    executed = await gate.record_execution(auto.id, agent, auto.grant, Outcome.STARTED)
    assert executed.grant_used_at is not None
    assert await owed(gate) == [pending.id]


async def test_a_callback_its_process_did_not_deliver_is_taken_over_when_its_hold_runs_out(
    gate: Gate, elsewhere: Gate, receiver: Receiver
) -> None:
    """The process committed the decision and died before sending: another takes over."""
    _, request = await submit(gate, "crm.read", receiver.url)
    other = sender_of(elsewhere)
    try:
        assert await other.take_over() == 0  # still held by the process that died
        assert isinstance(gate.clock, FakeClock)
        gate.clock.advance(DELIVERY_HOLD)
        assert await other.take_over() == 1
        await elsewhere.drain()
        assert await other.take_over() == 0
    finally:
        await other.close()
    assert receiver.seen == [f"{request.id}.approved"]
    assert await owed(gate) == []


async def test_a_holder_stopped_between_retries_is_taken_over_with_the_attempts_left(
    gate: Gate, elsewhere: Gate, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """The first process fails an attempt and stops in its wait; the second process makes
    the next attempt (not the first again); the first, waking, sends nothing more."""
    receiver.answers = [503]
    _, request = await submit(gate, "crm.read", receiver.url)
    woken = asyncio.Event()

    async def paused(_: float) -> None:
        await woken.wait()

    first, second = sender_of(gate, sleep=paused), sender_of(elsewhere)
    try:
        delivering = asyncio.create_task(first.deliver(request))
        await until(lambda: len(receiver.seen) == 1, what="the first attempt")
        await asyncio.sleep(0.05)  # its hold over the wait is recorded
        assert await second.take_over() == 0  # held over the wait and the next attempt
        assert isinstance(gate.clock, FakeClock)
        gate.clock.advance(first.delays[0] + first.timeout + HOLD_MARGIN)
        due = await gate.deliveries_due(Delivery.CALLBACK)
        assert [(o.request_id, o.attempts) for o in due] == [(request.id, 1)]
        caplog.set_level(logging.INFO, logger="adapters.callbacks")
        assert await second.take_over() == 1
        await elsewhere.drain()
        assert receiver.seen == [f"{request.id}.approved"] * 2
        assert second.outcomes.labels("taken_over")._value.get() == 1
        assert second.outcomes.labels("delivered")._value.get() == 1
        woken.set()
        assert await delivering is False
    finally:
        await first.close()
        await second.close()
    assert len(receiver.seen) == 2  # the first process did not send again
    assert await owed(gate) == []
    assert any("another process took it over" in r.getMessage() for r in caplog.records)


async def test_two_processes_taking_over_one_callback_at_once_send_it_once(
    gate: Gate, elsewhere: Gate, receiver: Receiver
) -> None:
    await submit(gate, "crm.read", receiver.url)
    assert isinstance(gate.clock, FakeClock)
    gate.clock.advance(DELIVERY_HOLD)
    one, two = sender_of(gate), sender_of(elsewhere)
    try:
        taken = await asyncio.gather(one.take_over(), two.take_over())
        await gate.drain()
        await elsewhere.drain()
    finally:
        await one.close()
        await two.close()
    assert sorted(taken) == [0, 1]
    assert len(receiver.seen) == 1


async def test_a_callback_given_up_after_its_last_attempt_is_forgotten(
    gate: Gate, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.answers = [500, 500, 500, 500]
    _, request = await submit(gate, "crm.read", receiver.url)
    sender = sender_of(gate)
    caplog.set_level(logging.WARNING, logger="adapters.callbacks")
    try:
        assert await sender.deliver(request) is False
    finally:
        await sender.close()
    assert len(receiver.seen) == 3  # the first attempt and one per delay
    assert sender.outcomes.labels("given_up")._value.get() == 1
    assert await owed(gate) == []
    assert any("not delivered after 3 attempts" in r.getMessage() for r in caplog.records)


async def test_requests_committed_together_each_owe_their_callback(
    gate: Gate, receiver: Receiver
) -> None:
    """Concurrent submissions commit in shared transactions (group commit): each request's
    callback is recorded with it."""
    agent, _ = await gate.register_agent("agent")
    stored = await asyncio.gather(
        *(
            gate.submit(agent, Submission(ToolCall("crm.read", {"id": i}), callback_url=url))
            for i, url in enumerate([receiver.url, None] * 20)
        )
    )
    with_url = sorted(r.id for r, _ in stored if r.callback_url)
    assert len(with_url) == 20
    assert sorted(await owed(gate)) == with_url


async def test_the_take_over_loop_outlives_a_store_it_cannot_reach(
    gate: Gate, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.runtime")
    sender = sender_of(gate)
    sender.sweep_every = 0.01
    await gate.store.close()  # every store call now raises StoreError
    looking = asyncio.create_task(sender.run())
    try:
        await until(
            lambda: (
                sum("looking for callbacks owed failed" in r.getMessage() for r in caplog.records)
                >= 2
            ),
            what="two failed looks",
        )
        assert not looking.done()
    finally:
        looking.cancel()
        await sender.close()


# ---------------------------------------------------------------------- a new request's cards


class StuckChannel(RecordingChannel):
    """A channel whose deliveries never finish (the process stops while posting)."""

    async def deliver(self, notice: Notice) -> None:
        self.notices.append(notice)
        await asyncio.Event().wait()


@dataclass
class TwoProcesses:
    """One process stuck posting cards (it will be killed), another that sees them."""

    clock: FakeClock
    stuck: StuckChannel
    seen: RecordingChannel
    dying: Gate
    other: Gate


@pytest_asyncio.fixture
async def two(tmp_path: Path, store: SqlStore) -> AsyncIterator[TwoProcesses]:
    clock, stuck, seen = FakeClock(), StuckChannel(), RecordingChannel()
    dying = await gate_with(tmp_path, store, clock, stuck)
    other = await gate_with(tmp_path, store, clock, seen)
    yield TwoProcesses(clock, stuck, seen, dying, other)
    await dying.drain(0.01, cancel=True)


def created(channel: RecordingChannel) -> list[str]:
    return [n.request.id for n in channel.notices if n.kind is NoticeKind.CREATED]


async def test_a_new_confirm_request_owes_its_cards_until_each_channel_had_its_try(
    tmp_path: Path, store: SqlStore
) -> None:
    channel = RecordingChannel()
    gate = await gate_with(tmp_path, store, FakeClock(), channel)
    _, confirm = await submit(gate, "payments.transfer", None)
    await submit(gate, "crm.read", None)
    await gate.drain()
    assert created(channel) == [confirm.id]  # an auto-tier request has no cards
    assert await owed(gate, kind=Delivery.CARDS) == []


async def test_cards_a_stopped_process_owed_are_announced_by_another_process(
    two: TwoProcesses,
) -> None:
    _, request = await submit(two.dying, "payments.transfer", None)
    await until(lambda: two.stuck.notices, what="the first process posting")
    assert await owed(two.dying, kind=Delivery.CARDS) == [request.id]
    assert await two.other.announce_owed() == 0  # still held by the process posting them
    two.clock.advance(DELIVERY_HOLD)
    assert await two.other.announce_owed() == 1
    await two.other.drain()
    assert created(two.seen) == [request.id]
    assert two.seen.notices[0].groups == ("finance",)
    assert await owed(two.other, kind=Delivery.CARDS) == []
    assert await two.other.announce_owed() == 0


async def test_a_confirm_request_decided_meanwhile_is_not_announced_again(
    two: TwoProcesses,
) -> None:
    agent, request = await submit(two.dying, "payments.transfer", None)
    await two.other.cancel(request.id, agent)
    two.clock.advance(DELIVERY_HOLD)
    assert await two.other.announce_owed() == 0
    await two.other.drain()
    assert created(two.seen) == []
    assert await owed(two.other, kind=Delivery.CARDS) == []


async def test_cards_no_process_gets_out_are_given_up_after_a_few_takes(
    tmp_path: Path, store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    stuck = StuckChannel()
    gate = await gate_with(tmp_path, store, clock, stuck)
    _, request = await submit(gate, "payments.transfer", None)
    caplog.set_level(logging.WARNING, logger="bot.service")
    for _ in range(ANNOUNCE_ATTEMPTS):
        clock.advance(DELIVERY_HOLD)
        assert await gate.announce_owed() == 1
    clock.advance(DELIVERY_HOLD)
    assert await gate.announce_owed() == 0
    assert await owed(gate, kind=Delivery.CARDS) == []
    assert created(stuck) == [request.id] * (1 + ANNOUNCE_ATTEMPTS)
    assert any("given up" in r.getMessage() for r in caplog.records)
    await gate.drain(0.01, cancel=True)
