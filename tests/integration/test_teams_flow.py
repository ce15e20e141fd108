"""Teams end to end over real HTTP: the agent API, the real Agents SDK behind
``/api/messages`` with signed activities, and the fake Bot Framework connector."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pytest_aiohttp import AiohttpClient

from adapters.teams.channel import TeamsChannel
from bot.domain import Change, Platform, Verdict
from bot.ports import Notice, NoticeKind
from tests.fakes.bot_connector import Message
from tests.fakes.teams_env import (
    ALICE,
    APP_ID,
    BOB,
    CAROL,
    FINANCE,
    LEADS,
    MALLORY,
    OTHER_TENANT,
    TENANT,
    TeamsEnv,
    card_text,
    teams_env,
    verbs,
)

ARGS = {"amount": 25000, "currency": "USD", "to": "acct-123"}
CARD = "application/vnd.microsoft.card.adaptive"


@pytest_asyncio.fixture
async def env(tmp_path: Path, aiohttp_client: AiohttpClient) -> AsyncIterator[TeamsEnv]:
    async with teams_env(tmp_path, aiohttp_client) as e:
        yield e


async def long_poll(env: TeamsEnv, request_id: str) -> asyncio.Task[dict[str, Any]]:
    """Start the agent's ``?wait=30`` long-poll and return once the server holds it."""
    task = asyncio.create_task(env.poll(request_id, wait=30))
    pending = env.runtime.gate.metrics.pending
    await env.fake.wait_for(lambda: pending._value.get() >= 1 or task.done())
    assert not task.done(), "the long-poll returned before any decision"
    return task


async def updated(env: TeamsEnv, message: Message, edits: int = 1) -> dict[str, Any]:
    await env.fake.wait_for(lambda: message.edits >= edits)
    assert message.card is not None
    return message.card


async def test_card_is_posted_with_the_exact_call_and_its_copy_recorded(env: TeamsEnv) -> None:
    body = await env.submit(
        "payments.transfer",
        ARGS,
        justification="Refund for order 8812",
        context={"ticket": 4471},
    )
    (post,) = await env.posts(body["id"])
    assert (post.platform, post.group, post.channel) == (Platform.TEAMS, "finance", FINANCE)
    assert post.extra["service_url"] == env.fake.service_url
    message = env.fake.messages[post.message_id]
    assert message.conversation_id == FINANCE and message.reply_to is None
    (attachment,) = message.body["attachments"]
    assert attachment["contentType"] == CARD
    card = attachment["content"]
    assert card["version"] == "1.5"
    text = card_text(card)
    for expected in (
        "payments.transfer",
        "billing-agent",
        "large-transfer",
        "tt1",
        body["policy"]["digest"],
        body["arguments_sha256"],
        "Refund for order 8812",
        json.dumps(ARGS, indent=2),
        '"ticket": 4471',
        "0 of 1",
        body["id"],
    ):
        assert expected in text, expected
    assert verbs(card) == {"approve", "deny"}
    assert card["refresh"]["userIds"] == [f"8:orgid:{ALICE}", f"8:orgid:{BOB}"]
    # Outbound calls carried the app's client-credentials token.
    (call,) = env.fake.calls_of("post")
    assert call.authorization is not None and call.authorization[7:] in env.fake.issued
    grant = env.fake.token_requests[0]
    assert grant["client_id"] == APP_ID and grant["grant_type"] == "client_credentials"
    assert grant["scope"] == "https://api.botframework.com/.default"


async def test_authorised_approve_end_to_end(env: TeamsEnv) -> None:
    body = await env.submit("payments.transfer", ARGS)
    message = await env.card_message(body["id"])
    waiting = await long_poll(env, body["id"])  # the agent waits for the human

    answer = await env.click("approve", body["id"], ALICE)
    assert answer["statusCode"] == 200 and answer["type"] == CARD
    assert "Approved" in card_text(answer["value"]) and verbs(answer["value"]) == set()

    final = await asyncio.wait_for(waiting, 10)
    assert final["status"] == "approved" and final["grant"]

    card = await updated(env, message)
    assert verbs(card) == set() and "refresh" not in card
    assert "Approved by Alice" in card_text(card)
    (reply,) = await env.fake.wait_for(lambda: env.fake.replies(message.id))
    assert reply.body["text"].startswith("**Approved**") and "by Alice" in reply.body["text"]
    (vote,) = await env.runtime.store.votes(body["id"])
    assert vote.approver.platform is Platform.TEAMS
    assert (vote.approver.tenant, vote.approver.user_id) == (TENANT, ALICE)
    assert vote.approver.display_name == "Alice" and vote.approver.via == "chat_click"


async def test_deny_with_reason_end_to_end(env: TeamsEnv) -> None:
    body = await env.submit("payments.transfer", ARGS)
    message = await env.card_message(body["id"])
    waiting = await long_poll(env, body["id"])

    answer = await env.click("deny", body["id"], BOB, reason="wrong account <at>x</at>")
    assert "Denied" in card_text(answer["value"])

    final = await asyncio.wait_for(waiting, 10)
    assert final["status"] == "denied" and final["reason"] == "wrong account <at>x</at>"
    assert final["grant"] is None

    card = await updated(env, message)
    assert verbs(card) == set() and "wrong account <at>x</at>" in card_text(card)
    (reply,) = await env.fake.wait_for(lambda: env.fake.replies(message.id))
    assert "&lt;at&gt;x&lt;/at&gt;" in reply.body["text"]


async def test_deny_without_reason_changes_nothing(env: TeamsEnv) -> None:
    body = await env.submit("payments.transfer", ARGS)
    await env.card_message(body["id"])
    answer = await env.click("deny", body["id"], ALICE, reason="   ")
    assert "reason is required" in card_text(answer["value"])
    assert verbs(answer["value"]) == {"approve", "deny"}
    assert (await env.poll(body["id"], wait=0))["status"] == "pending"
    assert await env.runtime.store.votes(body["id"]) == []


@pytest.mark.parametrize(
    ("user", "tenant"),
    [(MALLORY, TENANT), (CAROL, TENANT), (ALICE, OTHER_TENANT)],
    ids=["stranger", "approver-of-another-group", "right-user-wrong-tenant"],
)
async def test_non_approver_is_refused_for_themselves_only(
    env: TeamsEnv, user: str, tenant: str
) -> None:
    body = await env.submit("payments.transfer", ARGS)
    message = await env.card_message(body["id"])
    answer = await env.click("approve", body["id"], user, tenant=tenant)
    assert answer["statusCode"] == 200 and answer["type"] == CARD
    text = card_text(answer["value"])
    assert "Nothing was recorded" in text and "not an approver" in text
    await env.runtime.gate.drain()
    assert (await env.poll(body["id"], wait=0))["status"] == "pending"
    assert await env.runtime.store.votes(body["id"]) == []
    assert message.edits == 0 and env.fake.calls_of("update") == []


async def test_self_approval_is_refused(env: TeamsEnv) -> None:
    body = await env.submit("payments.transfer", ARGS, context={"requested_by": ALICE})
    await env.card_message(body["id"])
    answer = await env.click("approve", body["id"], ALICE)
    assert "someone else must decide" in card_text(answer["value"])
    assert (await env.poll(body["id"], wait=0))["status"] == "pending"


async def test_two_person_quorum_duplicates_and_replays(env: TeamsEnv) -> None:
    body = await env.submit("payments.wire", ARGS)
    message = await env.card_message(body["id"])

    first = await env.click("approve", body["id"], ALICE)
    assert "1 of 2" in card_text(first["value"])
    assert verbs(first["value"]) == {"approve", "deny"}
    card = await updated(env, message)
    assert "1 of 2" in card_text(card) and verbs(card) == {"approve", "deny"}

    again = await env.click("approve", body["id"], ALICE)  # same human, or a replayed invoke
    assert "already voted" in card_text(again["value"])
    assert (await env.poll(body["id"], wait=0))["status"] == "pending"

    second = await env.click("approve", body["id"], BOB)
    assert "2 of 2" in card_text(second["value"]) and verbs(second["value"]) == set()
    assert (await env.poll(body["id"]))["status"] == "approved"
    card = await updated(env, message, edits=2)
    assert verbs(card) == set() and "Approved by Bob" in card_text(card)

    late = await env.click("deny", body["id"], BOB, reason="changed my mind")
    assert "already approved" in card_text(late["value"])
    assert len(await env.runtime.store.votes(body["id"])) == 2


async def test_card_is_updated_on_expiry(env: TeamsEnv) -> None:
    body = await env.submit("payments.transfer", ARGS)
    message = await env.card_message(body["id"])
    await env.runtime.gate.expire(body["id"])
    card = await updated(env, message)
    assert verbs(card) == set() and "Expired" in card_text(card)
    assert (await env.poll(body["id"], wait=0))["status"] == "expired"
    answer = await env.click("approve", body["id"], ALICE)
    assert "already expired" in card_text(answer["value"])


async def test_refresh_returns_the_current_card(env: TeamsEnv) -> None:
    body = await env.submit("payments.wire", ARGS)
    await env.card_message(body["id"])
    await env.click("approve", body["id"], ALICE)
    answer = await env.click("refresh", body["id"], MALLORY)
    assert "1 of 2" in card_text(answer["value"]) and "Nothing was recorded" not in card_text(
        answer["value"]
    )
    missing = await env.click("refresh", "no-such-request", ALICE)
    assert missing["statusCode"] == 404
    assert missing["type"] == "application/vnd.microsoft.error"


async def test_notify_tier_posts_an_information_card(env: TeamsEnv) -> None:
    body = await env.submit("email.send", {"to": "ceo@example.com"})
    assert body["status"] == "approved"
    message = await env.card_message(body["id"])
    assert verbs(message.card) == set()
    assert "For your information" in card_text(message.card)


async def test_connector_throttling_and_outages_are_retried(env: TeamsEnv) -> None:
    env.fake.fail("post", 429, retry_after="0")
    env.fake.fail("post", 502)
    env.fake.fail("update", 412)
    env.fake.fail("update", 504)
    body = await env.submit("payments.transfer", ARGS)
    message = await env.card_message(body["id"])
    assert [c.status for c in env.fake.calls_of("post")] == [429, 502, 201]
    await env.click("approve", body["id"], ALICE)
    card = await updated(env, message)
    assert verbs(card) == set()
    assert [c.status for c in env.fake.calls_of("update")] == [412, 504, 200]


async def test_undeliverable_card_never_allows(env: TeamsEnv) -> None:
    env.fake.fail("post", 500, times=10)
    body = await env.submit("payments.transfer", ARGS)
    await env.fake.wait_for(lambda: len(env.fake.calls_of("post")) >= 5)
    await env.runtime.gate.drain()
    assert env.fake.posts() == []
    assert (await env.poll(body["id"], wait=0))["status"] == "pending"
    metric = env.runtime.gate.metrics.channel_errors.labels("teams")._value.get()
    assert metric == 1


async def test_reminder_mentions_the_group_in_the_thread(env: TeamsEnv) -> None:
    body = await env.submit("payments.transfer", ARGS)
    message = await env.card_message(body["id"])
    await env.click("refresh", body["id"], ALICE)  # Teams tells us Alice's display name
    request = await env.runtime.gate.get(body["id"])
    env.runtime.gate.publish(Notice(NoticeKind.REMINDER, request, groups=("finance",)))
    (reply,) = await env.fake.wait_for(lambda: env.fake.replies(message.id))
    text = reply.body["text"]
    assert text.startswith("Reminder:") and "<at>Alice</at>" in text
    mentioned = {e["mentioned"]["id"]: e["text"] for e in reply.body["entities"]}
    assert mentioned == {ALICE: "<at>Alice</at>", BOB: "<at>approver</at>"}


async def test_escalation_posts_to_the_new_group_and_its_approver_decides(env: TeamsEnv) -> None:
    body = await env.submit("payments.transfer", ARGS)
    first = await env.card_message(body["id"])
    request = await env.runtime.gate.get(body["id"])
    # What the escalation step commits (adapters/escalation), then announces.
    escalated = replace(request, extra_groups=("leads",), version=request.version + 1)
    stored = await env.runtime.store.commit(Change(request, escalated))
    env.runtime.gate.publish(Notice(NoticeKind.ESCALATED, stored, groups=("leads",)))
    posts = await env.posts(body["id"], count=2)
    leads = next(p for p in posts if p.group == "leads")
    assert leads.channel == LEADS
    await updated(env, first)  # the first copy now names the added group
    assert "finance, leads" in card_text(first.card)
    answer = await env.click("approve", body["id"], CAROL, conversation=LEADS)
    assert "Approved" in card_text(answer["value"])
    assert (await env.poll(body["id"]))["status"] == "approved"
    (vote,) = await env.runtime.store.votes(body["id"])
    assert vote.group == "leads" and vote.verdict is Verdict.APPROVE


async def test_messages_get_setup_help_and_teach_the_service_url(
    env: TeamsEnv, tmp_path: Path
) -> None:
    from tests.fakes.bot_connector import FakeBotFramework

    regional = await FakeBotFramework(app_id=APP_ID, app_password="x").start()
    regional.issued = env.fake.issued  # tokens from the configured token endpoint
    try:
        activity = {
            "type": "message",
            "id": "m1",
            "channelId": "msteams",
            "text": "hello",
            "serviceUrl": regional.service_url,
            "from": {"id": "29:alice", "name": "Alice", "aadObjectId": ALICE},
            "recipient": {"id": f"28:{APP_ID}"},
            "conversation": {
                "id": f"{FINANCE};messageid=9",
                "conversationType": "channel",
                "tenantId": TENANT,
            },
        }
        token = env.fake.inbound_token(service_url=regional.service_url)
        status, _ = await env.send(activity, token=token)
        assert status == 202
        (help_reply,) = await regional.wait_for(lambda: regional.calls_of("reply"))
        assert "conversation\\_id 19:finance@thread\\.tacv2" in help_reply.body["text"]
        # Cards for that conversation now go to the service URL Teams used.
        body = await env.submit("payments.transfer", ARGS)
        (post,) = await env.posts(body["id"])
        assert post.extra["service_url"] == regional.service_url
        assert regional.posts(FINANCE) and env.fake.posts() == []
        # The learned URL is in the store: another replica (or this one restarted) uses it.
        replica = TeamsChannel(
            env.runtime.gate, env.channel.connector, routes=env.runtime.wiring.routes
        )
        assert replica.references == {}
        route = env.runtime.policies.current.groups["finance"].teams
        assert route is not None and route.service_url != regional.service_url
        assert await replica.service_url(route) == regional.service_url
    finally:
        await regional.stop()


async def test_page_goes_to_the_escalation_conversation_when_configured(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    extra = """
        escalation_service_url: "{service_url}"
        escalation_conversation_id: "19:oncall@thread.tacv2"
    """
    async with teams_env(tmp_path, aiohttp_client, teams_extra=extra) as env:
        body = await env.submit("payments.transfer", {"to": "[x](https://evil)"})
        await env.card_message(body["id"])
        request = await env.runtime.gate.get(body["id"])
        env.runtime.gate.publish(Notice(NoticeKind.PAGE, request, groups=("leads",)))
        (page,) = await env.fake.wait_for(lambda: env.fake.posts("19:oncall@thread.tacv2"))
        assert page.body["text"].startswith(f"Escalation: request {body['id']}")
        assert "payments\\.transfer" in page.body["text"]


async def test_page_is_ignored_without_an_escalation_conversation(env: TeamsEnv) -> None:
    body = await env.submit("payments.transfer", ARGS)
    await env.card_message(body["id"])
    request = await env.runtime.gate.get(body["id"])
    env.runtime.gate.publish(Notice(NoticeKind.PAGE, request))
    await env.runtime.gate.drain()
    assert len(env.fake.calls) == 1  # the card only


async def test_activities_from_another_tenant_never_redirect_cards(env: TeamsEnv) -> None:
    activity = env.activity("refresh", "whatever", ALICE, tenant=OTHER_TENANT)
    activity["serviceUrl"] = "https://smba.other.example/"
    token = env.fake.inbound_token(service_url="https://smba.other.example/")
    status, _ = await env.send(activity, token=token)
    assert status == 200
    assert env.channel.references == {}
