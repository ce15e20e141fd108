"""People (SPEC §5, issue 12 items 2 and 3): one human is one vote and never their own
approver, whatever channel or identity they use.

Driven the way the security review drove the attacks: the agent API and the console over real
HTTP (aiohttp's test server), Slack clicks through the real slack-bolt path with payloads
signed as Slack signs them and the fake Slack Web API answering ``users.info`` and user
groups. Each refusal must change nothing: no vote, still pending, no attestation.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator

from adapters.console import mount as mount_console
from adapters.console.passwords import hash_password
from adapters.main import Runtime, build
from adapters.slack import SlackAdapter
from adapters.slack import mount as mount_slack
from adapters.slack.cards import ACTION_APPROVE, ACTION_VIEW_ARGS
from bot.domain import Status
from bot.evidence.dsse import b64decode, decode
from bot.evidence.statement import parse_statement
from bot.settings import load_settings
from bot.store.users import ConsoleUser, UserStore
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_payloads import block_actions, form, sign
from tests.support import write_home

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
PASSWORD = "correct horse battery"
ALICE_ENTRA = "0f6c1e2a-aaaa-4bbb-8ccc-0123456789ab"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')

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


@dataclass
class Env:
    runtime: Runtime
    slack: SlackAdapter
    fake: FakeSlack
    http: TestClient  # type: ignore[type-arg]
    token: str

    async def post_request(self, **body: Any) -> Any:
        payload = {"tool": "payments.transfer", "arguments": {"amount": 25000}, **body}
        return await self.http.post(
            "/v1/requests", json=payload, headers={"Authorization": f"Bearer {self.token}"}
        )

    async def submit(self, tool: str = "payments.transfer", **body: Any) -> str:
        resp = await self.post_request(tool=tool, **body)
        assert resp.status == 201, await resp.text()
        request_id: str = (await resp.json())["id"]
        return request_id

    async def click(self, request_id: str, user: str, team: str = "T0TEAM") -> None:
        body = form(block_actions(ACTION_APPROVE, request_id, user=user, team=team))
        resp = await self.http.post("/slack/events", data=body, headers=sign(SECRET, body))
        assert resp.status == 200, await resp.text()
        await self.settle()

    async def settle(self) -> None:
        for _ in range(3):
            await self.slack.drain()
            await self.runtime.gate.drain()

    def ephemerals(self, user: str) -> list[str]:
        return [
            c.args["text"]
            for c in self.fake.ok_calls("chat.postEphemeral")
            if c.args.get("user") == user
        ]

    async def login(self, name: str) -> None:
        self.http.session.cookie_jar.clear()
        page = await self.http.get("/console/login")
        match = TOKEN.search(await page.text())
        assert match is not None
        resp = await self.http.post(
            "/console/login",
            data={"csrf_token": match.group(1), "username": name, "password": PASSWORD},
            allow_redirects=False,
        )
        assert resp.status == 303, await resp.text()

    async def console_vote(self, request_id: str, verdict: str = "approve") -> tuple[int, str]:
        page = await self.http.get(f"/console/requests/{request_id}")
        text = await page.text()
        match = TOKEN.search(text)
        assert match is not None, text
        resp = await self.http.post(
            f"/console/requests/{request_id}/decide",
            data={"csrf_token": match.group(1), "verdict": verdict, "reason": "checked"},
            allow_redirects=False,
        )
        return resp.status, await resp.text()

    async def state(self, request_id: str) -> tuple[Status, int, int]:
        """Status, number of votes and number of log entries of the request."""
        gate = self.runtime.gate
        request = await gate.get(request_id)
        votes = await gate.store.votes(request_id)
        entries = await gate.store.log_entries_for(request_id)
        return request.status, len(votes), len(entries)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    slack = FakeSlack()
    await slack.start()
    slack.add_user("U0ALICE", "alice", "alice@example.com")
    slack.add_user("U0CAROL", "carol", "carol@example.com")
    slack.add_user("U0BOBSLACK", "bob", "Bob@Example.com")  # no slack id in people
    slack.add_user("U0MALLORY", "mallory", "mallory@example.com")
    slack.add_user("U0LEGACY", "lee", "lee@example.com")
    slack.add_usergroup("S0FINANCE", ["U0BOBSLACK"])
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
    request: pytest.FixtureRequest, tmp_path: Path, fake: FakeSlack, aiohttp_client: Any
) -> AsyncIterator[Env]:
    policy = getattr(request, "param", POLICY)
    settings = {
        "bot_token": fake.token,
        "signing_secret": SECRET,
        "api_base_url": fake.base_url,
        "usergroup_ttl": "60s",
    }
    extra = "slack:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in settings.items())
    runtime = await build(
        load_settings(write_home(tmp_path, policy=policy, extra=extra)), adapters=False
    )
    adapter = mount_slack(runtime, retry_interval=FixedValueRetryIntervalCalculator(0.01))
    mount_console(runtime)
    users = UserStore(runtime.store)
    hashed = hash_password(PASSWORD)
    for name in ("alice", "bob", "carol"):
        await users.add_user(ConsoleUser(name, hashed, datetime.now(UTC)))
    http = await aiohttp_client(runtime.app)
    _, token = await runtime.gate.register_agent("billing-agent")
    e = Env(runtime, adapter, fake, http, token)
    try:
        yield e
    finally:
        await e.settle()
        await runtime.store.close()


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
