"""Slack end to end through real HTTP: the real slack-bolt / slack_sdk code against the fake
Slack Web API on an ephemeral port, with interaction payloads signed as Slack signs them.

"Done when" (issue 4): an agent submits a confirm request over the API, the card appears in
the fake Slack, a non-member's click is refused, an authorised approver clicks Approve, the
agent's long-poll returns approved and the card shows the decision; the same for Deny with a
reason from the modal, and for a two-person quorum.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from pytest_aiohttp import AiohttpClient

from adapters.slack.cards import ACTION_APPROVE, ACTION_DENY, ACTION_VIEW_ARGS
from adapters.slack.modals import VIEW_DENY
from bench.fakes.slack_api import FakeSlack
from bench.fakes.slack_payloads import (
    block_actions,
    form,
    reason_values,
    sign,
    view_submission,
)
from bot.domain import Approver, Event, Platform, Request, Status, Verdict
from bot.errors import ChannelError
from bot.ports import Notice, NoticeKind
from tests.integration.slack_support import SECRET, Env, action_ids, card_text, make_env


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    slack = FakeSlack()
    await slack.start()
    slack.add_user("U0ALICE", "alice", "alice@example.com")
    slack.add_user("U0ERIN", "erin", "erin@example.com")
    slack.add_user("U0BOSS", "boss", "boss@example.com")
    slack.add_user("U0MALLORY", "mallory", "mallory@example.com")
    slack.add_user("U0CAROL", "carol", "carol@example.com")
    slack.add_user("U0HIDDEN", "hidden", "hidden@example.com", hide_email=True)
    slack.add_usergroup("S0FINANCE", ["U0ALICE", "U0ERIN", "U0HIDDEN"])
    try:
        yield slack
    finally:
        await slack.close()


@pytest_asyncio.fixture
async def env(tmp_path: Path, fake: FakeSlack, aiohttp_client: AiohttpClient) -> AsyncIterator[Env]:
    e = await make_env(tmp_path, fake, aiohttp_client)
    try:
        yield e
    finally:
        await e.settle()
        await e.runtime.store.close()


# ---------------------------------------------------------------------- done when


async def test_done_when_approve(env: Env) -> None:
    created = await env.submit(context={"requested_by": "bob@example.com"})
    rid = created["id"]
    card = await env.card()
    assert action_ids(card) == {ACTION_APPROVE, ACTION_DENY}
    assert rid in card_text(card) and created["arguments_sha256"] in card_text(card)
    (post,) = await env.runtime.gate.store.posts(rid, Platform.SLACK)
    assert (post.channel, post.message_id, post.group) == ("C0FINANCE", card.ts, "finance")
    poll = env.poll(rid)

    await env.click(block_actions(ACTION_APPROVE, rid, user="U0MALLORY", message_ts=card.ts))
    assert env.ephemerals("U0MALLORY") == [
        "🚫 Not recorded: you are not an approver for this request."
    ]
    assert card.edits == 0 and (await env.request(rid)).status is Status.PENDING
    assert not poll.done()

    await env.click(block_actions(ACTION_APPROVE, rid, user="U0ALICE", message_ts=card.ts))
    answer = await asyncio.wait_for(poll, 5)
    assert answer["status"] == "approved" and answer["grant"]
    await env.settle()
    assert action_ids(card) == set() and card.edits >= 1
    assert "Approved" in card.blocks[0]["text"]["text"]
    assert "Approved* by <@U0ALICE>" in card_text(card)
    (reply,) = env.fake.replies("C0FINANCE", card.ts)
    request = await env.request(rid)
    assert "<@U0ALICE>" in reply.text and f"log index {request.last_log_index}" in reply.text
    (vote,) = await env.runtime.gate.store.votes(rid)
    assert vote.approver == Approver(
        Platform.SLACK,
        "T0TEAM",
        "U0ALICE",
        "alice",
        "alice@example.com",
        via="chat_click",
        person="slack:U0ALICE",  # no people entry claims U0ALICE: a person of its own
    )
    assert vote.group == "finance"


async def test_done_when_deny_with_a_reason_from_the_modal(env: Env) -> None:
    rid = (await env.submit())["id"]
    card = await env.card()
    poll = env.poll(rid)

    await env.click(block_actions(ACTION_DENY, rid, user="U0MALLORY", message_ts=card.ts))
    assert env.fake.calls_to("views.open") == []  # a non-approver gets no dialog
    assert "not an approver" in env.ephemerals("U0MALLORY")[0]

    await env.click(block_actions(ACTION_DENY, rid, user="U0BOSS", message_ts=card.ts))
    (opened,) = env.fake.ok_calls("views.open")
    view = opened.args["view"]
    assert view["callback_id"] == VIEW_DENY
    metadata = view["private_metadata"]
    assert json.loads(metadata)["request"] == rid

    blank = await env.post(view_submission(VIEW_DENY, metadata, reason_values("  "), user="U0BOSS"))
    assert blank.status == 200
    assert (await blank.json())["response_action"] == "errors"
    await env.settle()
    assert (await env.request(rid)).status is Status.PENDING

    await env.click(
        view_submission(VIEW_DENY, metadata, reason_values("wrong account"), user="U0BOSS")
    )
    answer = await asyncio.wait_for(poll, 5)
    assert answer["status"] == "denied" and answer["reason"] == "wrong account"
    await env.settle()
    assert action_ids(card) == set()
    assert "Denied* by <@U0BOSS>" in card_text(card) and "wrong account" in card_text(card)


async def test_done_when_two_person_quorum(env: Env) -> None:
    rid = (await env.submit("payments.wire"))["id"]
    card = await env.card()
    poll = env.poll(rid)
    assert "Approvals:* 0 of 2" in card_text(card)

    await env.click(block_actions(ACTION_APPROVE, rid, user="U0ALICE", message_ts=card.ts))
    assert "recorded (1 of 2)" in env.ephemerals("U0ALICE")[0]
    assert "Approvals:* 1 of 2 · <@U0ALICE> approved" in card_text(card)
    assert action_ids(card) == {ACTION_APPROVE, ACTION_DENY}  # still pending
    assert not poll.done()

    await env.click(block_actions(ACTION_APPROVE, rid, user="U0ALICE", message_ts=card.ts))
    assert "already voted" in env.ephemerals("U0ALICE")[1]
    assert len(await env.runtime.gate.store.votes(rid)) == 1

    await env.click(block_actions(ACTION_APPROVE, rid, user="U0ERIN", message_ts=card.ts))
    answer = await asyncio.wait_for(poll, 5)
    assert answer["status"] == "approved" and answer["approvals"] == {"required": 2, "received": 2}
    await env.settle()
    assert action_ids(card) == set()
    assert "Approved* by <@U0ALICE>, <@U0ERIN>" in card_text(card)


# ---------------------------------------------------------------------- who may decide


async def test_the_requester_cannot_approve_their_own_request(env: Env) -> None:
    rid = (await env.submit(context={"requested_by": "alice@example.com"}))["id"]
    card = await env.card()
    await env.click(block_actions(ACTION_APPROVE, rid, user="U0ALICE", message_ts=card.ts))
    assert "you requested this call" in env.ephemerals("U0ALICE")[0]
    assert card.edits == 0 and (await env.request(rid)).status is Status.PENDING


async def test_the_requester_is_found_by_email_when_the_profile_hides_it(env: Env) -> None:
    rid = (await env.submit(context={"requested_by": "hidden@example.com"}))["id"]
    card = await env.card()
    await env.click(block_actions(ACTION_APPROVE, rid, user="U0HIDDEN", message_ts=card.ts))
    assert "you requested this call" in env.ephemerals("U0HIDDEN")[0]
    assert env.fake.ok_calls("users.lookupByEmail")
    assert (await env.request(rid)).status is Status.PENDING


async def test_an_unreadable_profile_cannot_rule_out_self_approval(env: Env) -> None:
    rid = (await env.submit(context={"requested_by": "alice@example.com"}))["id"]
    card = await env.card()
    env.fake.inject("users.info", status=500, times=10)
    await env.click(block_actions(ACTION_APPROVE, rid, user="U0ERIN", message_ts=card.ts))
    assert "could not read your Slack profile" in env.ephemerals("U0ERIN")[0]
    assert (await env.request(rid)).status is Status.PENDING


async def test_a_user_group_that_cannot_be_read_authorises_nobody(env: Env) -> None:
    rid = (await env.submit())["id"]
    card = await env.card()
    env.fake.inject("usergroups.users.list", error="ratelimited")
    await env.click(block_actions(ACTION_APPROVE, rid, user="U0ALICE", message_ts=card.ts))
    assert "not an approver" in env.ephemerals("U0ALICE")[0]
    assert (await env.request(rid)).status is Status.PENDING
    # not cached: the next click reads the group again and succeeds
    await env.click(block_actions(ACTION_APPROVE, rid, user="U0ALICE", message_ts=card.ts))
    assert (await env.request(rid)).status is Status.APPROVED


async def test_a_click_on_a_decided_request_is_refused(env: Env) -> None:
    rid = (await env.submit())["id"]
    card = await env.card()
    await env.click(block_actions(ACTION_APPROVE, rid, user="U0ALICE", message_ts=card.ts))
    edits = card.edits
    await env.click(block_actions(ACTION_DENY, rid, user="U0ERIN", message_ts=card.ts))
    assert "already approved" in env.ephemerals("U0ERIN")[0]
    assert card.edits == edits


async def test_simultaneous_clicks_make_exactly_one_decision(env: Env) -> None:
    rid = (await env.submit())["id"]
    card = await env.card()
    clicks = [
        block_actions(ACTION_APPROVE, rid, user=u, message_ts=card.ts)
        for u in ("U0ALICE", "U0ERIN", "U0BOSS")
    ]
    answers = await asyncio.gather(*(env.post(c) for c in clicks))
    assert [a.status for a in answers] == [200, 200, 200]
    await env.settle()
    assert (await env.request(rid)).status is Status.APPROVED
    assert len(await env.runtime.gate.store.votes(rid)) == 1
    entries = await env.runtime.store.log_entries_for(rid)
    assert [e.event for e in entries].count(Event.APPROVED) == 1
    refused = [
        u
        for u in ("U0ALICE", "U0ERIN", "U0BOSS")
        if any("already approved" in t for t in env.ephemerals(u))
    ]
    assert len(refused) == 2
    assert len(env.fake.replies("C0FINANCE", card.ts)) == 1


# ---------------------------------------------------------------------- signatures, replays


@pytest.mark.parametrize("tamper", ["bad_signature", "stale", "unsigned", "future"])
async def test_unverified_requests_get_401_and_change_nothing(env: Env, tamper: str) -> None:
    rid = (await env.submit())["id"]
    card = await env.card()
    calls = len(env.fake.calls)
    body = form(block_actions(ACTION_APPROVE, rid, user="U0ALICE", message_ts=card.ts))
    headers = sign(SECRET, body)
    if tamper == "bad_signature":
        headers = sign("not-the-secret", body)
    elif tamper == "stale":
        headers = sign(SECRET, body, timestamp=int(time.time()) - 6 * 60)
    elif tamper == "future":
        headers = sign(SECRET, body, timestamp=int(time.time()) + 6 * 60)
    else:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    resp = await env.http.post("/slack/events", data=body, headers=headers)
    assert resp.status == 401
    await env.settle()
    assert (await env.request(rid)).status is Status.PENDING
    assert await env.runtime.gate.store.votes(rid) == []
    assert len(env.fake.calls) == calls and card.edits == 0


async def test_a_replayed_payload_changes_nothing(env: Env) -> None:
    rid = (await env.submit("payments.wire"))["id"]
    card = await env.card()
    click = block_actions(ACTION_APPROVE, rid, user="U0ALICE", message_ts=card.ts)
    body = form(click)
    headers = sign(SECRET, body)
    first = await env.http.post("/slack/events", data=body, headers=headers)
    await env.settle()
    updates = len(env.fake.calls_to("chat.update"))
    for _ in range(3):
        again = await env.http.post("/slack/events", data=body, headers=headers)
        assert again.status == first.status == 200
    await env.settle()
    assert len(await env.runtime.gate.store.votes(rid)) == 1
    assert len(env.ephemerals("U0ALICE")) == 1  # the replay is not even answered
    assert len(env.fake.calls_to("chat.update")) == updates


# ---------------------------------------------------------------------- cards kept true


async def test_expiry_and_cancellation_rewrite_every_copy(env: Env) -> None:
    rid = (await env.submit())["id"]
    card = await env.card()
    await env.runtime.gate.expire(rid)
    await env.settle()
    assert action_ids(card) == set() and "Expired" in card.blocks[0]["text"]["text"]
    assert "no decision before the deadline" in env.fake.replies("C0FINANCE", card.ts)[0].text

    rid2 = (await env.submit())["id"]
    card2 = await env.card(count=2)
    resp = await env.http.post(
        f"/v1/requests/{rid2}/cancel", headers={"Authorization": f"Bearer {env.token}"}
    )
    assert resp.status == 200
    await env.settle()
    assert action_ids(card2) == set() and "Cancelled" in card2.blocks[0]["text"]["text"]


async def test_a_decision_before_the_card_lands_posts_it_final(env: Env) -> None:
    env.fake.delays["chat.postMessage"] = 0.3
    rid = (await env.submit())["id"]
    await asyncio.sleep(0.05)  # the card is on its way
    boss = Approver(Platform.SLACK, "T0TEAM", "U0BOSS", "boss")
    await env.runtime.gate.decide(rid, boss, Verdict.APPROVE, memberships={"finance"})
    await env.settle()
    env.fake.delays.clear()
    card = await env.card()
    assert action_ids(card) == set() and "Approved" in card.blocks[0]["text"]["text"]
    assert len(env.fake.replies("C0FINANCE", card.ts)) == 1


async def test_reminder_escalation_and_page(env: Env) -> None:
    created = await env.submit()
    rid = created["id"]
    card = await env.card()
    request = await env.request(rid)
    gate = env.runtime.gate
    gate.publish(Notice(NoticeKind.REMINDER, request, groups=("finance",)))
    await env.settle()
    (reminder,) = env.fake.replies("C0FINANCE", card.ts)
    assert reminder.text.startswith("⏰ Reminder: <!subteam^S0FINANCE>")

    gate.publish(Notice(NoticeKind.ESCALATED, request, groups=("leads",)))
    await env.settle()
    leads = await env.card("C0LEADS")
    assert action_ids(leads) == {ACTION_APPROVE, ACTION_DENY}
    assert {p.group for p in await gate.store.posts(rid, Platform.SLACK)} == {"finance", "leads"}

    gate.publish(Notice(NoticeKind.PAGE, request))
    await env.settle()
    (page,) = env.fake.cards("C0ESCALATE")
    assert page.text.startswith("<!here> ")
    assert f"https://slack.com/archives/C0FINANCE/p{card.ts.replace('.', '')}" in page.text


async def test_view_all_arguments_opens_the_whole_value(env: Env) -> None:
    big = {"memo": "<!channel> " + "z" * 20_000, "amount": 25000}
    rid = (await env.submit(arguments=big))["id"]
    await env.runtime.gate.expire(rid)
    card = await env.card()
    await env.settle()
    assert ACTION_VIEW_ARGS in action_ids(card)  # a decided card still offers the whole value
    await env.click(block_actions(ACTION_VIEW_ARGS, rid, user="U0ALICE", message_ts=card.ts))
    (opened,) = env.fake.ok_calls("views.open")
    shown = "".join(
        b["text"]["text"] for b in opened.args["view"]["blocks"] if b["type"] == "section"
    )
    assert shown.count("z") >= 20_000 and "&lt;!channel&gt;" in shown


async def test_notify_requests_get_an_information_card(env: Env) -> None:
    created = await env.submit("payments.refund")
    assert created["status"] == "approved"
    card = await env.card()
    assert action_ids(card) == set()
    assert card.blocks[0]["text"]["text"].startswith("\N{INFORMATION SOURCE} For your information")


# ---------------------------------------------------------------------- resilience


async def test_429_with_retry_after_is_honoured_and_the_card_lands(env: Env) -> None:
    env.fake.inject("chat.postMessage", status=429, retry_after=1)
    started = time.monotonic()
    rid = (await env.submit())["id"]
    card = await env.card()
    attempts = env.fake.calls_to("chat.postMessage")
    assert [c.status for c in attempts[:2]] == [429, 200]
    assert attempts[1].at - attempts[0].at >= 1.0  # waited for Retry-After
    assert time.monotonic() - started < 5
    assert rid in card_text(card)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_retried_and_the_card_lands(env: Env, status: int) -> None:
    env.fake.inject("chat.postMessage", status=status, times=2)
    rid = (await env.submit())["id"]
    card = await env.card()
    assert [c.status for c in env.fake.calls_to("chat.postMessage")] == [status, status, 200]
    assert rid in card_text(card)


async def test_a_slow_answer_times_out_and_is_retried(
    tmp_path: Path, fake: FakeSlack, aiohttp_client: AiohttpClient
) -> None:
    e = await make_env(tmp_path, fake, aiohttp_client)
    e.slack.channel.client.timeout = 1
    await e.slack.session.close()
    await e.slack.session.open()
    try:
        fake.inject("chat.postMessage", status=200, delay=2.0)
        rid = (await e.submit())["id"]
        card = await e.card()
        assert rid in card_text(card)
        (post,) = await e.runtime.gate.store.posts(rid, Platform.SLACK)
        assert post.message_id == card.ts
        # the abandoned first attempt is answered (late) too: two attempts in all
        await fake.wait_for(lambda: len(fake.calls_to("chat.postMessage")) == 2)
    finally:
        await e.settle()
        await e.runtime.store.close()


async def test_an_undeliverable_card_is_reported_and_never_allows(
    tmp_path: Path, fake: FakeSlack, aiohttp_client: AiohttpClient
) -> None:
    reported: list[tuple[str, str]] = []

    async def hook(request: Request, group: str, error: ChannelError) -> None:
        reported.append((request.id, group))

    env = await make_env(tmp_path, fake, aiohttp_client, undeliverable=hook)
    try:
        env.fake.inject("chat.postMessage", status=500, times=20)
        rid = (await env.submit())["id"]
        await env.settle()
        assert reported == [(rid, "finance")]
        assert await env.runtime.gate.store.posts(rid, Platform.SLACK) == []
        errors = env.runtime.gate.metrics.channel_errors.labels("slack")._value.get()
        assert errors == 1
        assert (await env.request(rid)).status is Status.PENDING
    finally:
        await env.settle()
        await env.runtime.store.close()


async def test_socket_mode_runs_as_a_background_job_when_an_app_token_is_set(
    tmp_path: Path, fake: FakeSlack, aiohttp_client: AiohttpClient
) -> None:
    e = await make_env(tmp_path, fake, aiohttp_client, app_token="xapp-1-test")
    try:
        assert len(e.runtime.background) == 1
    finally:
        await e.runtime.store.close()
