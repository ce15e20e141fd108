"""``PagerDutyPager`` over real HTTP against a local fake Events API v2."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Unpack

import pytest
import pytest_asyncio

from adapters.main import build
from adapters.pagerduty import PagerDutyPager, dedup_key
from bot.domain import (
    EscalationStep,
    PolicyRef,
    Request,
    Status,
    ToolCall,
)
from bot.errors import ChannelError
from bot.settings import load_settings
from tests.factories import Changes, changed, make_request
from tests.fakes.pagerduty import FakePagerDuty
from tests.support import write_home

KEY = "R0UTINGKEY0123456789ABCDEFGHIJKL"
CREATED = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def pending_request(**changes: Unpack[Changes]) -> Request:
    request = make_request(
        "0b6f6c1e-5d7c-4a2b-9d3e-2f1a8c9b7e01",
        call=ToolCall(
            "payments.transfer",
            {"amount": 25000, "to": "acct-SECRET-123"},
            "Refund for order 8812",
            {"requested_by": "user@example.com"},
        ),
        policy=PolicyRef("sha256:" + "ab" * 32, "2026-11-21", "large-transfer"),
        created_at=CREATED,
        arguments_sha256="cd" * 32,
        call_sha256="ef" * 32,
        artifact_digest="sha256:" + "12" * 32,
        escalation=(
            EscalationStep(timedelta(minutes=10), remind=True),
            EscalationStep(timedelta(minutes=15), to="finance-leads", page=True),
            EscalationStep(timedelta(minutes=30), deny=True),
        ),
        deadline=CREATED + timedelta(minutes=30),
        steps_done=2,
        extra_groups=("finance-leads",),
    )
    return changed(request, **changes)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakePagerDuty]:
    server = FakePagerDuty()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


class Pauses:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


@pytest_asyncio.fixture
async def pauses() -> Pauses:
    return Pauses()


@pytest_asyncio.fixture
async def pager(fake: FakePagerDuty, pauses: Pauses) -> AsyncIterator[PagerDutyPager]:
    p = PagerDutyPager(
        KEY, events_url=fake.url, public_url="https://signoff.example/", attempts=4, sleep=pauses
    )
    try:
        yield p
    finally:
        await p.close()


async def test_trigger_sends_an_events_v2_trigger_without_tool_arguments(
    fake: FakePagerDuty, pager: PagerDutyPager
) -> None:
    request = pending_request()
    await pager.trigger(request, "signoff: payments.transfer awaits approval")
    [event] = fake.events
    assert event["routing_key"] == KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "signoff-" + request.id == dedup_key(request)
    payload = event["payload"]
    assert payload["summary"] == "signoff: payments.transfer awaits approval"
    assert payload["source"] == "signoff"
    assert payload["severity"] == "critical"
    details = payload["custom_details"]
    assert details["request_id"] == request.id
    assert details["tool"] == "payments.transfer"
    assert details["arguments_sha256"] == request.arguments_sha256
    assert details["approver_groups"] == ["finance", "finance-leads"]
    assert details["deadline"] == "2026-11-21T10:30:00Z"
    assert "arguments" not in details and "context" not in details
    assert "acct-SECRET-123" not in str(event) and "user@example.com" not in str(event)
    assert event["client_url"] == f"https://signoff.example/v1/requests/{request.id}"
    assert fake.incidents == {dedup_key(request): "triggered"}


async def test_resolve_closes_the_incident_with_the_same_key(
    fake: FakePagerDuty, pager: PagerDutyPager
) -> None:
    request = pending_request()
    await pager.trigger(request, "page")
    await pager.resolve(replace(request, status=Status.APPROVED))
    resolve = fake.accepted("resolve")
    assert resolve == [
        {"routing_key": KEY, "event_action": "resolve", "dedup_key": dedup_key(request)}
    ]
    assert fake.incidents == {dedup_key(request): "resolved"}


async def test_a_request_that_never_paged_sends_no_resolve(
    fake: FakePagerDuty, pager: PagerDutyPager
) -> None:
    await pager.resolve(pending_request(steps_done=1, extra_groups=(), status=Status.APPROVED))
    assert fake.attempts == []


async def test_429_then_success_is_retried_with_backoff(
    fake: FakePagerDuty, pager: PagerDutyPager, pauses: Pauses
) -> None:
    fake.inject(429, 502)
    await pager.trigger(pending_request(), "page")
    assert [a.status for a in fake.attempts] == [429, 502, 202]
    assert pauses.seconds == [0.5, 1.0]
    assert len(fake.accepted("trigger")) == 1


async def test_5xx_until_the_attempts_run_out_raises_channel_error(
    fake: FakePagerDuty, pager: PagerDutyPager, pauses: Pauses
) -> None:
    fake.inject(500, 503, 503, 504, 503)
    with pytest.raises(ChannelError, match="HTTP 504"):
        await pager.trigger(pending_request(), "page")
    assert [a.status for a in fake.attempts] == [500, 503, 503, 504]
    assert pauses.seconds == [0.5, 1.0, 2.0]
    assert fake.incidents == {}


async def test_an_invalid_event_is_not_retried(fake: FakePagerDuty, pauses: Pauses) -> None:
    pager = PagerDutyPager(KEY, events_url=fake.url, severity="apocalyptic", sleep=pauses)
    try:
        with pytest.raises(ChannelError, match="HTTP 400"):
            await pager.trigger(pending_request(), "page")
    finally:
        await pager.close()
    assert [a.status for a in fake.attempts] == [400]
    assert pauses.seconds == []


async def test_an_unreachable_service_raises_channel_error(pauses: Pauses) -> None:
    server = FakePagerDuty()
    url = await server.start()
    await server.close()  # nothing listens there any more
    pager = PagerDutyPager(KEY, events_url=url, attempts=2, sleep=pauses)
    try:
        with pytest.raises(ChannelError, match="PagerDuty trigger"):
            await pager.trigger(pending_request(), "page")
    finally:
        await pager.close()
    assert pauses.seconds == [0.5]


async def test_the_routing_key_never_reaches_the_log(
    fake: FakePagerDuty, pager: PagerDutyPager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    fake.inject(503)
    await pager.trigger(pending_request(), "page")
    assert KEY not in caplog.text
    assert "retry 1" in caplog.text


async def test_the_composition_root_gives_the_gate_the_pager_from_settings(
    tmp_path: Path, fake: FakePagerDuty
) -> None:
    config = write_home(
        tmp_path,
        extra=f"""\
        pagerduty:
          routing_key: {KEY}
          events_url: {fake.url}
        """,
    )
    runtime = await build(load_settings(config))
    pager = runtime.part(PagerDutyPager)
    try:
        assert runtime.fanout.pager is pager
        assert pager.events_url == fake.url
        # no job waits forever for the shutdown: the session closes on the app's cleanup
        mounted = next(m for m in runtime.mounted if m.part is pager)
        assert mounted.jobs == () and len(mounted.on_cleanup) == 1
        await pager.trigger(pending_request(), "page")
        assert fake.events[0]["routing_key"] == KEY
    finally:
        runtime.app.freeze()
        await runtime.app.cleanup()
        assert pager._session is None
        await runtime.store.close()
