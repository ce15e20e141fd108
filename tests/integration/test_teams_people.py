"""People through Teams (SPEC §5, issue 12 items 2 and 3): an Entra object id is resolved to
its person, who has one vote across channels and can never decide their own request.

Teams clicks are signed activities posted to ``/api/messages`` through the real Agents SDK;
the earlier vote in another channel goes through the same ``Gate.decide`` every channel uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pytest_aiohttp import AiohttpClient

from bot.domain import Approver, Platform, Verdict
from tests.fakes.teams_env import ALICE, BOB, TeamsEnv, teams_env

ARGS = {"amount": 25000, "currency": "USD", "to": "acct-123"}

POLICY = """\
apiVersion: signoff/v1
kind: ToolPolicy
people:
  alice: {{email: alice@example.com, slack: U0ALICE, teams: "{alice}", console: alice}}
  bob: {{email: bob@example.com, teams: "{bob}"}}
  carol: {{email: carol@example.com, teams: "{carol}"}}
groups:
  finance:
    members: [alice, bob]
    teams: {{service_url: "{url}", conversation_id: "{finance}"}}
    console: {{}}
  leads:
    members: [carol]
    teams: {{service_url: "{url}", conversation_id: "{leads}"}}
rules:
  - name: dual-wire
    tool: payments.wire
    tier: confirm
    approvers: {{groups: [finance], quorum: 2}}
"""


@pytest_asyncio.fixture
async def env(tmp_path: Path, aiohttp_client: AiohttpClient) -> AsyncIterator[TeamsEnv]:
    async with teams_env(tmp_path, aiohttp_client, policy_template=POLICY) as e:
        yield e


def text_of(card: Any) -> str:
    return str(card)


async def test_a_member_by_person_decides_from_teams(env: TeamsEnv) -> None:
    created = await env.submit("payments.wire", ARGS)
    await env.click("approve", created["id"], BOB)
    (vote,) = await env.runtime.store.votes(created["id"])
    assert (vote.approver.person, vote.approver.platform) == ("bob", Platform.TEAMS)


async def test_one_person_in_the_console_and_teams_is_one_vote(env: TeamsEnv) -> None:
    created = await env.submit("payments.wire", ARGS)
    rid = created["id"]
    console_alice = Approver(Platform.CONSOLE, "console", "alice", "alice", via="console_login")
    await env.runtime.gate.decide(rid, console_alice, Verdict.APPROVE, "ok", memberships=())
    answer = await env.click("approve", rid, ALICE.upper())  # Entra ids in any case
    assert "already voted" in text_of(answer["value"])
    assert len(await env.runtime.store.votes(rid)) == 1
    assert (await env.poll(rid, wait=0))["status"] == "pending"


@pytest.mark.parametrize("requested_by", ["alice", "ALICE@example.com", "U0ALICE", ALICE])
async def test_the_requester_cannot_approve_from_teams(env: TeamsEnv, requested_by: str) -> None:
    created = await env.submit("payments.wire", ARGS, context={"requested_by": requested_by})
    answer = await env.click("approve", created["id"], ALICE)
    assert "you requested this call" in text_of(answer["value"])
    assert await env.runtime.store.votes(created["id"]) == []
