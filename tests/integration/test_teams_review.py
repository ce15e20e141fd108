"""What the approver saw, on Teams (SPEC §8): a card that cut the arguments offers "Review
and approve", whose invoke answers with the whole arguments and an Approve bound to their
digest; a plain approve from the cut card is refused. Over real HTTP through the Agents SDK
with signed activities."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from pytest_aiohttp import AiohttpClient

from adapters.teams.cards import EDITED_INPUT, REVIEW_VERB, REVIEWED
from bot.domain import Status
from bot.evidence.dsse import b64decode
from tests.fakes.teams_env import ALICE, TeamsEnv, card_text, teams_env, verbs

LONG = {"memo": "z" * 9_000, "amount": 25000}


@pytest_asyncio.fixture
async def env(tmp_path: Path, aiohttp_client: AiohttpClient) -> AsyncIterator[TeamsEnv]:
    async with teams_env(tmp_path, aiohttp_client) as e:
        yield e


async def test_a_cut_teams_card_approves_only_after_the_review_card(env: TeamsEnv) -> None:
    body = await env.submit("payments.transfer", LONG)
    rid = body["id"]
    message = await env.card_message(rid)
    assert message.card is not None and REVIEW_VERB in verbs(message.card)
    assert "approve" not in verbs(message.card)

    refused = await env.click("approve", rid, ALICE)
    assert "Review and approve" in card_text(refused["value"])
    assert (await env.runtime.gate.get(rid)).status is Status.PENDING

    review = await env.click(REVIEW_VERB, rid, ALICE)
    card = review["value"]
    assert card_text(card).count("z") >= 9_000
    (approve,) = card["actions"]
    assert approve["data"][REVIEWED] == body["arguments_sha256"]

    stale = await env.click("approve", rid, ALICE, data={REVIEWED: "0" * 64})
    assert "changed since you reviewed" in card_text(stale["value"])

    done = await env.click("approve", rid, ALICE, data={REVIEWED: body["arguments_sha256"]})
    assert "Approved" in card_text(done["value"])
    assert (await env.runtime.gate.get(rid)).status is Status.APPROVED
    entries = await env.runtime.store.log_entries_for(rid)
    statement = json.loads(b64decode(json.loads(entries[-1].envelope)["payload"], "payload"))
    approver = statement["predicate"]["approver"]
    assert (approver["shown"], approver["view"]) == ("full", "review_card")


async def test_an_editable_rule_edits_on_the_teams_review_card(env: TeamsEnv) -> None:
    body = await env.submit("payments.payout", {"amount": 25000, "to": "acct-1"})
    rid = body["id"]
    review = await env.click(REVIEW_VERB, rid, ALICE)
    (editor,) = [b for b in review["value"]["body"] if b.get("id") == EDITED_INPUT]
    assert json.loads(editor["value"]) == {"amount": 25000, "to": "acct-1"}
    data = {REVIEWED: body["arguments_sha256"], EDITED_INPUT: '{"amount": 7, "to": "acct-1"}'}
    done = await env.click("approve", rid, ALICE, data=data)
    assert "Approved" in card_text(done["value"])
    final = await env.poll(rid, wait=0)
    assert final["approved_arguments"] == {"amount": 7, "to": "acct-1"}
