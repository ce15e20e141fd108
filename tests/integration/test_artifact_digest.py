"""Issue 12 item 7: an agent's claimed ``artifact_digest`` never replaces the registered one.

The review registered an agent with one digest, had it claim the digest a policy trusted in
the request body, and got the trusted rule (and the trusted digest on the approver's card).
Driven over real HTTP (aiohttp's test server), with the card posted to the fake Slack through
the real slack_sdk client and the console detail page read over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from pytest_aiohttp import AiohttpClient

from adapters.slack.cards import ACTION_APPROVE
from bench.fakes.slack_api import FakeSlack
from tests.integration.people_support import Env, running, start_fake

TRUSTED = "sha256:" + "7" * 64
OTHER = "sha256:" + "e" * 64

POLICY = """\
apiVersion: signoff/v1
kind: ToolPolicy
people:
  alice: {email: alice@example.com, slack: U0ALICE, console: alice}
groups:
  finance:
    members: [alice]
    slack: {channel: C0FINANCE}
    console: {}
rules:
  - name: claimed-something-else
    tool: "*"
    when: agent.claimed_artifact_digest != null
    tier: confirm
    approvers: {groups: [finance]}
  - name: trusted-build
    tool: payments.transfer
    when: agent.artifact_digest == "TRUSTED"
    tier: auto
  - name: everything-else
    tool: "*"
    tier: confirm
    approvers: {groups: [finance]}
""".replace("TRUSTED", TRUSTED)


@pytest_asyncio.fixture
async def env(tmp_path: Path, aiohttp_client: AiohttpClient) -> AsyncIterator[Env]:
    fake: FakeSlack = await start_fake()
    try:
        async with running(tmp_path, fake, aiohttp_client, POLICY) as e:
            yield e
    finally:
        await fake.close()


async def submit(env: Env, token: str, **body: Any) -> dict[str, Any]:
    payload = {"tool": "payments.transfer", "arguments": {"amount": 25000}, **body}
    resp = await env.http.post(
        "/v1/requests", json=payload, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 201, await resp.text()
    answer: dict[str, Any] = await resp.json()
    return answer


async def test_a_claimed_digest_does_not_replace_the_registered_one(env: Env) -> None:
    _, token = await env.runtime.gate.register_agent("untrusted-agent", artifact_digest=OTHER)
    answer = await submit(env, token, artifact_digest=TRUSTED)
    # the policy saw the registered digest, and the claim separately
    assert answer["policy"]["rule"] == "claimed-something-else"
    assert answer["status"] == "pending"
    assert answer["agent"] == {
        "id": "untrusted-agent",
        "artifact_digest": OTHER,
        "claimed_artifact_digest": TRUSTED,
    }
    rid = answer["id"]
    request = await env.runtime.gate.get(rid)
    assert (request.artifact_digest, request.claimed_artifact_digest) == (OTHER, TRUSTED)

    await env.settle()
    (card,) = env.fake.cards("C0FINANCE")
    fields = [f["text"] for b in card.blocks if b["type"] == "section" for f in b.get("fields", [])]
    assert f"*Artifact*\n`{OTHER}`" in fields
    assert f"*Claimed artifact (unverified)*\n`{TRUSTED}`" in fields
    assert ACTION_APPROVE in json.dumps(card.blocks)

    await env.login("alice")
    page = await (await env.http.get(f"/console/requests/{rid}")).text()
    assert f'<code class="wrap" id="artifact">{OTHER}</code>' in page
    assert f'<code class="wrap" id="claimed-artifact">{TRUSTED}</code>' in page


async def test_the_registered_digest_repeated_is_no_claim(env: Env) -> None:
    _, token = await env.runtime.gate.register_agent("trusted-agent", artifact_digest=TRUSTED)
    answer = await submit(env, token, artifact_digest=TRUSTED)
    assert (answer["policy"]["rule"], answer["status"]) == ("trusted-build", "approved")
    assert answer["agent"]["claimed_artifact_digest"] is None


async def test_an_agent_without_a_registered_digest_only_claims(env: Env) -> None:
    _, token = await env.runtime.gate.register_agent("bare-agent")
    answer = await submit(env, token, artifact_digest=TRUSTED)
    assert answer["policy"]["rule"] == "claimed-something-else"
    assert answer["agent"]["artifact_digest"] is None
    assert answer["agent"]["claimed_artifact_digest"] == TRUSTED
