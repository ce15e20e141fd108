"""Escalation end to end: real ``signoff serve`` processes, a local fake Slack Web API and a
fake PagerDuty Events API, and a rule that reminds at 2 s, escalates to a second group and
pages at 4 s, and denies at 6 s (SPEC §5, §8 Escalation).

Checked: the reminder in the card's thread, the card for the second group, the ``<!here>``
page and the PagerDuty trigger/resolve, ``expired`` for the agent's long-poll, exactly one
``escalated`` attestation per step and one ``expired`` — also across a ``kill -9`` and a
restart, and with two processes sharing one PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest

from bench.fakes.slack_api import FakeSlack
from tests.e2e.serving import (
    LADDER_RULE,
    Home,
    Server,
    assert_ladder,
    fakes,
    http,
    parse_time,
    pg_database,
)
from tests.fakes.pagerduty import FakePagerDuty

pytestmark = pytest.mark.slow
__all__ = ["fakes", "http", "pg_database"]  # fixtures used here

POLICY = (
    """\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {name: escalation-e2e, version: "e2e-1"}
groups:
  finance:
    slack: {channel: C0FINANCE, users: [U0ALICE]}
  finance-leads:
    slack: {channel: C0LEADS, users: [U0CAROL]}
defaults:
  unknown_tool: confirm
  sla: 15m
  approvers: {groups: [finance]}
rules:
"""
    + LADDER_RULE
)


async def assert_chat_and_pages(slack: FakeSlack, pd: FakePagerDuty, request_id: str) -> None:
    [card] = slack.cards("C0FINANCE")
    assert request_id in json.dumps(card.blocks) or request_id in card.text
    replies = slack.replies("C0FINANCE", card.ts)
    reminders = [m for m in replies if "Reminder" in m.text]
    assert len(reminders) == 1, [m.text for m in replies]
    assert "<@U0ALICE>" in reminders[0].text  # mentions the group's approvers
    assert len(slack.cards("C0LEADS")) == 1
    pages = slack.cards("C0ESCALATE")
    assert len(pages) == 1 and "<!here>" in pages[0].text
    key = "signoff-" + request_id
    await pd.wait_for(lambda: pd.incidents.get(key) == "resolved", timeout=10)
    assert [e["dedup_key"] for e in pd.accepted("trigger")] == [key]
    assert [e["dedup_key"] for e in pd.accepted("resolve")] == [key]
    # the cards were updated when the request expired (buttons gone)
    await slack.wait_for(lambda: card.edits > 0, timeout=10)


async def test_remind_escalate_page_and_deny_on_time(
    tmp_path: Path, fakes: tuple[FakeSlack, FakePagerDuty], http: aiohttp.ClientSession
) -> None:
    slack, pd = fakes
    home = Home(tmp_path, f"sqlite:///{tmp_path / 'signoff.db'}", slack, pd, policy=POLICY)
    await home.add_agent()
    server = Server(home)
    await server.start(http)
    try:
        created = await server.submit(http)
        started = time.monotonic()
        final = await server.wait_final(http, created["id"])
        assert final["status"] == "expired" and final["grant"] is None
        assert 5.0 <= time.monotonic() - started <= 9.0
        statements = await server.statements(http, created["id"])
        assert_ladder(statements, late=1.0)
        await assert_chat_and_pages(slack, pd, created["id"])
    finally:
        await server.stop()


async def test_kill_9_between_steps_and_restart_repeats_no_step(
    tmp_path: Path, fakes: tuple[FakeSlack, FakePagerDuty], http: aiohttp.ClientSession
) -> None:
    slack, pd = fakes
    home = Home(tmp_path, f"sqlite:///{tmp_path / 'signoff.db'}", slack, pd, policy=POLICY)
    await home.add_agent()
    first = Server(home)
    await first.start(http)
    try:
        created = await first.submit(http)
        submitted = time.monotonic()
        [card] = await slack.wait_for(lambda: slack.cards("C0FINANCE"), timeout=5)
        # the reminder (2 s) has been posted: kill the server before the 4 s step
        await slack.wait_for(lambda: slack.replies("C0FINANCE", card.ts), timeout=5)
        await first.kill9()
        assert first.proc is not None
        await first.proc.wait()
        # stay down past the 4 s step, so it is due while signoff is down
        await asyncio.sleep(max(0.0, 4.3 - (time.monotonic() - submitted)))
    finally:
        await first.stop()
    second = Server(home)
    await second.start(http)
    # seconds after the submit at which the second process answered: a cold start (no
    # bytecode cache yet, a loaded CI machine) can take longer than the gap to the deny
    up = time.monotonic() - submitted
    try:
        final = await second.wait_final(http, created["id"])
        assert final["status"] == "expired"
        statements = await second.statements(http, created["id"])
        assert [s["decision"] for s in statements] == ["escalated", "escalated", "expired"]
        created_at = parse_time(statements[0]["request"]["created_at"])
        at = [(parse_time(s["timestamps"]["at"]) - created_at).total_seconds() for s in statements]
        assert 2.0 <= at[0] <= 3.0
        # the 4 s step fell due while signoff was down: it ran at once when it came back
        assert 4.0 <= at[1] <= max(4.3, up) + 1.5, (at, up)
        # the deny is on time, or at once if the restart itself outlasted the deadline
        assert 6.0 <= at[2] <= max(6.0, up) + 1.5, (at, up)
        assert at[1] <= at[2]
        await assert_chat_and_pages(slack, pd, created["id"])
    finally:
        await second.stop()


@pytest.mark.postgres
async def test_two_processes_on_one_postgresql_fire_each_step_once(
    tmp_path: Path,
    fakes: tuple[FakeSlack, FakePagerDuty],
    http: aiohttp.ClientSession,
    pg_database: str,
) -> None:
    slack, pd = fakes
    home = Home(tmp_path, pg_database, slack, pd, policy=POLICY)
    await home.add_agent()
    one, two = Server(home), Server(home)
    await asyncio.gather(one.start(http), two.start(http))
    try:
        # both processes hold a timer for the request; each step is claimed once
        created = await one.submit(http)
        final = await two.wait_final(http, created["id"])
        assert final["status"] == "expired"
        assert_ladder(await two.statements(http, created["id"]), late=1.5)
        await assert_chat_and_pages(slack, pd, created["id"])

        # a request created by a process that dies at once is picked up by the other one
        # (its sweep) and still follows the whole ladder on time
        orphan = await one.submit(http)
        await one.kill9()
        final = await two.wait_final(http, orphan["id"])
        assert final["status"] == "expired"
        assert_ladder(await two.statements(http, orphan["id"]), late=1.5)
        assert len(pd.accepted("trigger")) == 2
    finally:
        await asyncio.gather(one.stop(), two.stop())
