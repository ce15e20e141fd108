"""``Fanout.drain``: a stopping server waits for the cards, pages and callbacks being sent
(work they start meanwhile included), and with ``cancel`` ends what outlives the grace in one
warning line, never a traceback per task."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import pytest

from bot.domain import Platform
from bot.fanout import Fanout
from bot.ports import Notice, NoticeKind
from tests.factories import make_request


@dataclass
class SlowChannel:
    """Takes ``seconds`` per notice; the first notice publishes a follow-up (as a card update
    can lead to a thread reply)."""

    fanout: Fanout
    seconds: float
    platform: Platform = Platform.SLACK
    delivered: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    async def deliver(self, notice: Notice) -> None:
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled.append(notice.request.id)
            raise
        self.delivered.append(notice.request.id)
        if notice.request.id == "first":
            self.fanout.publish(Notice(NoticeKind.DECIDED, make_request("follow-up")))


def fanout_with(seconds: float) -> tuple[Fanout, SlowChannel]:
    fanout = Fanout()
    channel = SlowChannel(fanout, seconds)
    fanout.connect(channels=[channel])
    return fanout, channel


async def test_drain_waits_for_deliveries_including_those_started_while_it_waits() -> None:
    fanout, channel = fanout_with(0.1)
    fanout.publish(Notice(NoticeKind.CREATED, make_request("first")))
    assert await fanout.drain(5.0, cancel=True) == 0
    assert channel.delivered == ["first", "follow-up"]
    assert channel.cancelled == []


async def test_what_outlives_the_grace_is_cancelled_with_one_warning_and_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fanout, channel = fanout_with(30.0)
    for n in range(3):
        fanout.publish(Notice(NoticeKind.CREATED, make_request(f"slow-{n}")))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="bot.fanout"):
        assert await fanout.drain(0.2, cancel=True) == 3
    assert time.monotonic() - started < 5
    assert sorted(channel.cancelled) == ["slow-0", "slow-1", "slow-2"]
    assert channel.delivered == []
    [warning] = caplog.records
    assert warning.levelno == logging.WARNING
    assert "3 background deliveries" in warning.getMessage()
    assert warning.exc_info is None
    assert await fanout.drain(0.1) == 0  # nothing left behind


async def test_drain_without_cancel_leaves_slow_work_running() -> None:
    fanout, channel = fanout_with(0.5)
    fanout.publish(Notice(NoticeKind.CREATED, make_request("slow")))
    assert await fanout.drain(0.05) == 1
    assert channel.cancelled == []
    assert await fanout.drain(5.0) == 0
    assert channel.delivered == ["slow"]
