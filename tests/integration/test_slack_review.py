"""What the approver saw, on Slack (SPEC §8): a card that has to cut the arguments cannot
approve; its approve button is "Review and approve", a modal showing them in full with Approve
as its submit, and the attestation records ``shown: full`` and where.

Over real HTTP through slack-bolt, payloads signed with the signing secret, against the fake
Slack Web API (``bench/fakes/slack_api.py``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from pytest_aiohttp import AiohttpClient

from adapters.slack.cards import ACTION_APPROVE, ACTION_CONSOLE, ACTION_DENY, ACTION_REVIEW
from adapters.slack.modals import EDIT_ACTION, EDIT_BLOCK, VIEW_ARGUMENTS, VIEW_REVIEW
from bench.fakes.slack_api import FakeSlack
from bench.fakes.slack_payloads import block_actions, view_submission
from bot.domain import Status
from bot.evidence.dsse import b64decode
from tests.integration.slack_support import Env, action_ids, card_text, make_env

LONG = {"memo": "<!channel> " + "z" * 5_000, "amount": 25000, "to": "acct-123"}


@pytest_asyncio.fixture
async def review_env(tmp_path: Path, aiohttp_client: AiohttpClient) -> AsyncIterator[Env]:
    fake = FakeSlack()
    await fake.start()
    fake.add_user("U0ALICE", "alice", "alice@example.com")
    fake.add_user("U0ERIN", "erin", "erin@example.com")
    fake.add_user("U0MALLORY", "mallory", "mallory@example.com")
    fake.add_usergroup("S0FINANCE", ["U0ALICE", "U0ERIN"])
    env = await make_env(tmp_path, fake, aiohttp_client)
    try:
        yield env
    finally:
        await env.settle()
        await env.runtime.store.close()
        await fake.close()


async def _predicates(env: Env, rid: str) -> list[dict[str, Any]]:
    entries = await env.runtime.gate.store.log_entries_for(rid)
    out = []
    for entry in entries:
        statement = json.loads(b64decode(json.loads(entry.envelope)["payload"], "payload"))
        out.append(statement["predicate"])
    return out


async def test_a_cut_card_approves_only_through_the_review_modal(review_env: Env) -> None:
    env = review_env
    rid = (await env.submit(arguments=LONG))["id"]
    card = await env.card()
    assert action_ids(card) == {ACTION_REVIEW, ACTION_DENY}
    assert "Review and approve" in card_text(card)
    poll = env.poll(rid)

    # A forged (well-signed) direct Approve on the cut card is refused and changes nothing.
    await env.click(block_actions(ACTION_APPROVE, rid, user="U0ALICE", message_ts=card.ts))
    assert "Review and approve" in env.ephemerals("U0ALICE")[0]
    assert (await env.request(rid)).status is Status.PENDING
    assert await env.runtime.gate.store.votes(rid) == []
    assert not poll.done()

    # Review and approve opens the whole arguments with Approve as the modal's submit.
    await env.click(block_actions(ACTION_REVIEW, rid, user="U0ALICE", message_ts=card.ts))
    (opened,) = env.fake.ok_calls("views.open")
    view = opened.args["view"]
    assert view["callback_id"] == VIEW_REVIEW and view["submit"]["text"] == "Approve"
    shown = "".join(b["text"]["text"] for b in view["blocks"] if b["type"] == "section")
    assert shown.count("z") >= 5_000 and "&lt;!channel&gt;" in shown

    # A non-approver submitting the modal is refused too (authorisation at submission).
    await env.click(view_submission(VIEW_REVIEW, view["private_metadata"], {}, user="U0MALLORY"))
    assert "not an approver" in env.ephemerals("U0MALLORY")[0]
    assert (await env.request(rid)).status is Status.PENDING

    await env.click(view_submission(VIEW_REVIEW, view["private_metadata"], {}, user="U0ALICE"))
    answer = await asyncio.wait_for(poll, 5)
    assert answer["status"] == "approved" and answer["grant"]
    approved = [p for p in await _predicates(env, rid) if p["decision"] == "approved"]
    assert approved[-1]["approver"]["shown"] == "full"
    assert approved[-1]["approver"]["view"] == "review_modal"


async def test_a_card_showing_everything_records_shown_full_on_the_card(review_env: Env) -> None:
    env = review_env
    rid = (await env.submit())["id"]
    card = await env.card()
    assert action_ids(card) == {ACTION_APPROVE, ACTION_DENY}
    await env.click(block_actions(ACTION_APPROVE, rid, user="U0ALICE", message_ts=card.ts))
    assert (await env.request(rid)).status is Status.APPROVED
    (approved,) = [p for p in await _predicates(env, rid) if p["decision"] == "approved"]
    assert (approved["approver"]["shown"], approved["approver"]["view"]) == ("full", "card")


async def test_arguments_too_long_for_a_modal_send_the_approver_to_the_console(
    review_env: Env,
) -> None:
    env = review_env
    huge = {"blob": "<" * 200_000}  # escaped as &lt; it needs 800,000 characters
    rid = (await env.submit(arguments=huge))["id"]
    card = await env.card()
    await env.click(block_actions(ACTION_REVIEW, rid, user="U0ALICE", message_ts=card.ts))
    (opened,) = env.fake.ok_calls("views.open")
    view = opened.args["view"]
    assert view["callback_id"] == VIEW_ARGUMENTS and "submit" not in view
    assert f"/console/requests/{rid}" in json.dumps(view["blocks"])


def edit_values(text: str) -> dict[str, Any]:
    return {EDIT_BLOCK: {EDIT_ACTION: {"type": "plain_text_input", "value": text}}}


async def test_an_editable_rule_edits_in_the_review_modal(review_env: Env) -> None:
    env = review_env
    created = await env.submit("payments.payout")
    rid = created["id"]
    card = await env.card()
    await env.click(block_actions(ACTION_REVIEW, rid, user="U0ALICE", message_ts=card.ts))
    (opened,) = env.fake.ok_calls("views.open")
    view = opened.args["view"]
    editor = [b for b in view["blocks"] if b.get("block_id") == EDIT_BLOCK]
    assert editor and json.loads(editor[0]["element"]["initial_value"]) == {
        "amount": 25000,
        "to": "acct-123",
    }
    metadata = view["private_metadata"]

    bad = await env.post(
        view_submission(VIEW_REVIEW, metadata, edit_values("{oops"), user="U0ALICE")
    )
    answer = await bad.json()
    assert (
        answer["response_action"] == "errors" and "not valid JSON" in answer["errors"][EDIT_BLOCK]
    )
    await env.settle()
    assert (await env.request(rid)).status is Status.PENDING

    edited = '{"amount": 900, "to": "acct-123"}'
    poll = env.poll(rid)
    await env.click(view_submission(VIEW_REVIEW, metadata, edit_values(edited), user="U0ALICE"))
    answer = await asyncio.wait_for(poll, 5)
    assert answer["status"] == "approved"
    assert answer["approved_arguments"] == {"amount": 900, "to": "acct-123"}
    approved = [p for p in await _predicates(env, rid) if p["decision"] == "approved"][-1]
    assert approved["edit"]["by"] == "slack:U0ALICE"  # the person (unmapped id)
    assert approved["request"]["arguments_sha256"] == created["arguments_sha256"]
    await env.settle()
    assert "edited by alice" in card_text(card)


async def test_a_step_up_rule_links_to_the_console_and_a_click_is_refused(
    review_env: Env,
) -> None:
    env = review_env
    rid = (await env.submit("db.drop", arguments={"table": "orders"}))["id"]
    card = await env.card()
    assert action_ids(card) == {ACTION_CONSOLE, ACTION_DENY}
    (button,) = [
        e
        for b in card.blocks
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == ACTION_CONSOLE
    ]
    assert button["url"].endswith(f"/console/requests/{rid}")
    # A forged (well-signed) Approve click is refused with a link to the console.
    await env.click(block_actions(ACTION_APPROVE, rid, user="U0ALICE", message_ts=card.ts))
    (refusal,) = env.ephemerals("U0ALICE")
    assert "security key" in refusal and f"/console/requests/{rid}" in refusal
    assert (await env.request(rid)).status is Status.PENDING
