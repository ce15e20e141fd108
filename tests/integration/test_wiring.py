"""The composition root (``adapters.main.build``) puts in place what each configured adapter's
``mount`` returns, once: channels and the pager reach the gate's fanout, routes and hooks the
app, jobs the background; an adapter that is off adds nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.callbacks import CallbackSender
from adapters.console import ConsoleChannel
from adapters.email import EmailChannel
from adapters.main import build
from adapters.pagerduty import PagerDutyPager
from bot.domain import Platform
from bot.fanout import Fanout
from bot.scheduler import Scheduler
from bot.settings import load_settings
from tests.fakes.pager import FakePager
from tests.support import write_home

EXTRA = """\
pagerduty: {routing_key: "R0UTINGKEY", events_url: "http://127.0.0.1:9/v2/enqueue"}
email: {smtp_url: "smtp://127.0.0.1:9", from: signoff@example.com}
"""


async def test_build_puts_every_contribution_in_place_once(tmp_path: Path) -> None:
    runtime = await build(load_settings(write_home(tmp_path, extra=EXTRA)))
    try:
        fanout = runtime.fanout
        assert runtime.gate.fanout is fanout
        assert [c.platform for c in fanout.channels] == [Platform.EMAIL, Platform.CONSOLE]
        assert fanout.channels == (runtime.part(EmailChannel), runtime.part(ConsoleChannel))
        assert fanout.pager is runtime.part(PagerDutyPager)
        # the escalation timers and the callbacks are always on, and hear of final requests
        scheduler, sender = runtime.part(Scheduler), runtime.part(CallbackSender)
        finals = [f for m in runtime.mounted for f in m.final_listeners]
        assert finals == [scheduler.on_final, sender.on_final]
        paths = {
            r.get_info().get("path") or r.get_info().get("prefix")
            for r in runtime.app.router.resources()
        }
        assert {"/email/decide", "/console"} <= paths
        # jobs: the scheduler while leading, the take-over of callbacks and cards stopped
        # processes owed (every process), and the change feed
        assert len(runtime.background) == 4
        assert sender.run in runtime.background
        # the wiring happened once: a second connect is refused
        with pytest.raises(RuntimeError, match="twice"):
            fanout.connect()
    finally:
        await runtime.close()


async def test_an_adapter_that_is_off_adds_nothing(tmp_path: Path) -> None:
    home = write_home(tmp_path, extra="console: {enabled: false}\n")
    runtime = await build(load_settings(home))
    try:
        assert runtime.fanout.channels == () and runtime.fanout.pager is None
        with pytest.raises(LookupError):
            runtime.part(PagerDutyPager)
    finally:
        await runtime.close()


def test_a_fanout_has_one_pager() -> None:
    fanout = Fanout(pager=FakePager())
    with pytest.raises(RuntimeError, match="one pager"):
        fanout.connect(pager=FakePager())
