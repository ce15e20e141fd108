"""People (SPEC §5, issue 12 items 2 and 3): one human is one vote and never their own
approver, whatever channel or identity they use.

Driven the way the security review drove the attacks: the agent API and the console over real
HTTP (aiohttp's test server), Slack clicks through the real slack-bolt path with payloads
signed as Slack signs them and the fake Slack Web API answering ``users.info`` and user
groups. Each refusal must change nothing: no vote, still pending, no attestation.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pytest_aiohttp import AiohttpClient

from adapters.slack.cards import ACTION_VIEW_ARGS
from bench.fakes.slack_api import FakeSlack
from bench.fakes.slack_payloads import block_actions, form, sign
from bot.domain import Status
from bot.evidence.dsse import b64decode, decode
from bot.evidence.statement import parse_statement
from tests.integration.people_support import SECRET, Env, running, start_fake

ALICE_ENTRA = "0f6c1e2a-aaaa-4bbb-8ccc-0123456789ab"

POLICY = f"""\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {{name: people-test, version: "p1"}}
people:
  alice: {{email: alice@example.com, slack: U0ALICE, teams: {ALICE_ENTRA}, console: alice}}
  bob:   {{email: bob@example.com, console: bob}}
  carol: {{email: carol@example.com, slack: U0CAROL, console: carol}}
groups:
  finance:
    members: [alice, bob, carol]
    slack: {{channel: C0FINANCE, usergroup: S0FINANCE}}
    console: {{}}
  legacy:
    slack: {{channel: C0LEGACY, users: [U0LEGACY]}}
defaults:
  unknown_tool: confirm
  sla: 15m
  approvers: {{groups: [finance]}}
rules:
  - name: large-transfer
    tool: payments.transfer
    tier: confirm
    approvers: {{groups: [finance]}}
  - name: dual-wire
    tool: payments.wire
    tier: confirm
    approvers: {{groups: [finance, legacy], quorum: 2}}
"""


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    slack = await start_fake()
    try:
        yield slack
    finally:
        await slack.close()


LEGACY = """\
apiVersion: signoff/v1
kind: ToolPolicy
groups:
  finance:
    slack: {channel: C0FINANCE, users: [U0ALICE, U0LEGACY, U0CAROL]}
    console: {users: [alice, bob, carol]}
rules:
  - name: dual-wire
    tool: payments.wire
    tier: confirm
    approvers: {groups: [finance], quorum: 2}
"""


@pytest_asyncio.fixture
async def env(
    request: pytest.FixtureRequest, tmp_path: Path, fake: FakeSlack, aiohttp_client: AiohttpClient
) -> AsyncIterator[Env]:
    async with running(tmp_path, fake, aiohttp_client, getattr(request, "param", POLICY)) as e:
        yield e


# ------------------------------------------------------------ item 2: self-approval


@pytest.mark.parametrize(
    "requested_by",
    ["alice", "ALICE@Example.COM", "U0ALICE", ALICE_ENTRA.upper(), " alice@example.com "],
)
async def test_the_requester_cannot_approve_from_the_console_under_any_of_her_names(
    env: Env, requested_by: str
) -> None:
    rid = await env.submit(context={"requested_by": requested_by})
    await env.login("alice")
    status, page = await env.console_vote(rid)
    assert status == 403
    assert "you requested this call" in page
    assert await env.state(rid) == (Status.PENDING, 0, 0)


@pytest.mark.parametrize("requested_by", ["alice", "alice@example.com", "console:alice"])
async def test_the_requester_cannot_approve_from_slack(env: Env, requested_by: str) -> None:
    rid = await env.submit(context={"requested_by": requested_by})
    await env.click(rid, "U0ALICE")
    assert env.ephemerals("U0ALICE") == [
        "🚫 Not recorded: you requested this call, so someone else must decide it."
    ]
    assert await env.state(rid) == (Status.PENDING, 0, 0)


async def test_a_usergroup_member_is_mapped_by_the_email_slack_reports(env: Env) -> None:
    # U0BOBSLACK is in no people entry, but Slack says its address is bob's (any case).
    rid = await env.submit(context={"requested_by": "bob"})
    await env.click(rid, "U0BOBSLACK")
    assert "you requested this call" in env.ephemerals("U0BOBSLACK")[0]
    assert await env.state(rid) == (Status.PENDING, 0, 0)

    rid = await env.submit(tool="payments.wire")
    await env.click(rid, "U0BOBSLACK")
    (vote,) = await env.runtime.gate.store.votes(rid)
    assert vote.approver.person == "bob" and vote.approver.user_id == "U0BOBSLACK"
    await env.login("bob")
    status, page = await env.console_vote(rid)
    assert status == 409 and "already voted" in page
    assert await env.state(rid) == (Status.PENDING, 1, 1)


@pytest.mark.parametrize(
    ("requested_by", "problem"),
    [
        (["alice"], "context.requested_by: must be a string"),
        (42, "context.requested_by: must be a string"),
        ({"email": "alice@example.com"}, "context.requested_by: must be a string"),
        (None, "context.requested_by: must be a string"),
    ],
)
async def test_a_requested_by_that_is_not_a_string_is_a_400(
    env: Env, requested_by: Any, problem: str
) -> None:
    resp = await env.post_request(context={"requested_by": requested_by})
    assert resp.status == 400
    assert resp.content_type == "application/problem+json"
    body = await resp.json()
    assert problem in " ".join(body["errors"])
    assert await env.runtime.gate.store.list_requests(limit=None) == []


async def test_openapi_lists_requested_by_as_a_string(env: Env) -> None:
    doc = await (await env.http.get("/openapi.json")).json()
    submit = doc["components"]["schemas"]["ToolCall"]["properties"]["context"]
    assert submit["properties"]["requested_by"]["type"] == "string"


# ------------------------------------------------------------ item 3: quorum counts people


async def test_one_person_voting_from_slack_and_the_console_is_one_vote(env: Env) -> None:
    rid = await env.submit(tool="payments.wire")
    await env.click(rid, "U0ALICE")
    assert await env.state(rid) == (Status.PENDING, 1, 1)
    await env.login("alice")
    status, page = await env.console_vote(rid)
    assert status == 409
    assert "already voted" in page
    assert await env.state(rid) == (Status.PENDING, 1, 1)

    # a second, different person completes the quorum
    await env.login("carol")
    status, _ = await env.console_vote(rid)
    assert status == 303
    request = await env.runtime.gate.get(rid)
    assert request.status is Status.APPROVED
    assert sorted(v.approver.person for v in await env.runtime.gate.store.votes(rid)) == [
        "alice",
        "carol",
    ]
    # the console names people, with the channel each vote came from
    page = await (await env.http.get(f"/console/requests/{rid}")).text()
    assert '<td>alice <span class="muted">slack</span></td>' in page
    assert '<td>carol <span class="muted">console</span></td>' in page
    assert "slack:T0TEAM:U0ALICE" not in page and "console:console:carol" not in page


async def test_one_person_voting_from_the_console_then_slack_is_one_vote(env: Env) -> None:
    rid = await env.submit(tool="payments.wire")
    await env.login("alice")
    assert (await env.console_vote(rid))[0] == 303
    await env.click(rid, "U0ALICE")
    assert "already voted" in env.ephemerals("U0ALICE")[0]
    assert await env.state(rid) == (Status.PENDING, 1, 1)


async def test_the_same_slack_id_under_two_team_ids_is_one_person(env: Env) -> None:
    # U0LEGACY is in no people entry: it is a person of its own, whatever the team id says.
    rid = await env.submit(tool="payments.wire")
    await env.click(rid, "U0LEGACY", team="T0TEAM")
    await env.click(rid, "U0LEGACY", team="T0OTHERTEAM")
    assert "already voted" in env.ephemerals("U0LEGACY")[-1]
    assert await env.state(rid) == (Status.PENDING, 1, 1)


async def test_attestations_name_the_person_and_the_account(env: Env) -> None:
    rid = await env.submit(tool="payments.wire")
    await env.click(rid, "U0ALICE")
    (entry,) = await env.runtime.gate.store.log_entries_for(rid)
    envelope = decode(entry.envelope)
    statement = parse_statement(b64decode(envelope["payload"], "payload"))
    approver = statement["predicate"]["approver"]
    assert (approver["person"], approver["platform"], approver["user_id"]) == (
        "alice",
        "slack",
        "U0ALICE",
    )
    (vote,) = statement["predicate"]["approvals"]["votes"]
    assert vote["person"] == "alice" and vote["approver"] == "slack:T0TEAM:U0ALICE"


# ------------------------------------------------------------ item 8: view all arguments


async def test_view_all_arguments_is_for_approvers_only(env: Env) -> None:
    rid = await env.submit(arguments={"amount": 25000, "note": "x" * 5000})
    body = form(block_actions(ACTION_VIEW_ARGS, rid, user="U0MALLORY"))
    resp = await env.http.post("/slack/events", data=body, headers=sign(SECRET, body))
    assert resp.status == 200
    await env.settle()
    assert env.fake.calls_to("views.open") == []
    assert env.ephemerals("U0MALLORY") == [
        "🚫 Not recorded: you are not an approver for this request."
    ]
    body = form(block_actions(ACTION_VIEW_ARGS, rid, user="U0CAROL"))
    resp = await env.http.post("/slack/events", data=body, headers=sign(SECRET, body))
    await env.settle()
    (opened,) = env.fake.ok_calls("views.open")
    assert rid in json.dumps(opened.args["view"])


# ------------------------------------------------------------ with the older users lists only


@pytest.mark.parametrize("env", [LEGACY], indirect=True)
async def test_legacy_lists_the_same_slack_id_under_two_team_ids_is_one_vote(env: Env) -> None:
    rid = await env.submit(tool="payments.wire")
    await env.click(rid, "U0LEGACY", team="T0TEAM")
    await env.click(rid, "U0LEGACY", team="T0GRIDTWO")
    assert "already voted" in env.ephemerals("U0LEGACY")[-1]
    assert await env.state(rid) == (Status.PENDING, 1, 1)


@pytest.mark.parametrize("env", [LEGACY], indirect=True)
@pytest.mark.parametrize("requested_by", ["console:alice", "Alice"])
async def test_legacy_lists_the_requester_cannot_approve(env: Env, requested_by: str) -> None:
    rid = await env.submit(tool="payments.wire", context={"requested_by": requested_by})
    await env.login("alice")
    status, page = await env.console_vote(rid)
    assert status == 403 and "you requested this call" in page
    assert await env.state(rid) == (Status.PENDING, 0, 0)


@pytest.mark.parametrize("env", [LEGACY], indirect=True)
async def test_legacy_lists_requested_by_as_a_list_is_a_400(env: Env) -> None:
    resp = await env.post_request(tool="payments.wire", context={"requested_by": ["alice"]})
    assert resp.status == 400 and resp.content_type == "application/problem+json"


@pytest.mark.parametrize("env", [LEGACY], indirect=True)
async def test_legacy_lists_view_all_arguments_is_for_approvers_only(env: Env) -> None:
    rid = await env.submit(tool="payments.wire", arguments={"note": "x" * 5000})
    body = form(block_actions(ACTION_VIEW_ARGS, rid, user="U0MALLORY"))
    resp = await env.http.post("/slack/events", data=body, headers=sign(SECRET, body))
    assert resp.status == 200
    await env.settle()
    assert env.fake.calls_to("views.open") == []
    assert "not an approver" in env.ephemerals("U0MALLORY")[0]
