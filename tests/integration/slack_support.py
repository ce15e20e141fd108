"""Support for the Slack tests: a signoff runtime with the Slack adapter pointed at the fake
Slack Web API (``bench/fakes/slack_api.py``), its policy and signing secret, and an ``Env``
that submits requests, signs and posts interaction payloads and waits for cards."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pytest_aiohttp import AiohttpClient
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator

from adapters.main import build
from adapters.runtime import Mounted, Runtime, Wiring
from adapters.slack import SlackAdapter, mount
from bench.fakes.slack_api import FakeSlack, Message
from bench.fakes.slack_payloads import form, sign
from bot.domain import Request
from bot.ports import Undeliverable
from bot.settings import load_settings
from tests.support import AppClient, write_home

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"

POLICY = """\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {name: slack-test, version: "s1"}
groups:
  finance:
    slack: {channel: C0FINANCE, usergroup: S0FINANCE, users: [U0BOSS]}
  leads:
    slack: {channel: C0LEADS, users: [U0CAROL]}
  security:
    slack: {channel: C0SECURITY, users: [U0SAM]}
defaults:
  unknown_tool: confirm
  sla: 15m
  approvers: {groups: [security]}
rules:
  - name: large-transfer
    tool: payments.transfer
    tier: confirm
    approvers: {groups: [finance]}
    sla: 15m
  - name: dual-wire
    tool: payments.wire
    tier: confirm
    approvers: {groups: [finance], quorum: 2}
  - name: refunds
    tool: payments.refund
    tier: notify
    approvers: {groups: [finance]}
  - name: editable-payout
    tool: payments.payout
    tier: confirm
    editable: true
    approvers: {groups: [finance]}
  - name: keyed-drop
    tool: db.drop
    tier: confirm
    step_up: webauthn
    approvers: {groups: [finance]}
"""


@dataclass
class Env:
    runtime: Runtime
    slack: SlackAdapter
    fake: FakeSlack
    http: AppClient
    token: str

    async def submit(self, tool: str = "payments.transfer", **body: Any) -> dict[str, Any]:
        payload = {"tool": tool, "arguments": {"amount": 25000, "to": "acct-123"}, **body}
        resp = await self.http.post(
            "/v1/requests", json=payload, headers={"Authorization": f"Bearer {self.token}"}
        )
        assert resp.status == 201, await resp.text()
        result: dict[str, Any] = await resp.json()
        return result

    def poll(self, request_id: str) -> asyncio.Task[dict[str, Any]]:
        async def run() -> dict[str, Any]:
            resp = await self.http.get(
                f"/v1/requests/{request_id}?wait=20",
                headers={"Authorization": f"Bearer {self.token}"},
            )
            assert resp.status == 200
            body: dict[str, Any] = await resp.json()
            return body

        return asyncio.get_running_loop().create_task(run())

    async def post(self, payload: dict[str, Any], **sign_args: Any) -> Any:
        body = form(payload)
        return await self.http.post(
            "/slack/events", data=body, headers=sign(SECRET, body, **sign_args)
        )

    async def click(self, payload: dict[str, Any]) -> Any:
        resp = await self.post(payload)
        assert resp.status == 200, await resp.text()
        await self.settle()
        return resp

    async def settle(self) -> None:
        for _ in range(3):
            await self.slack.drain()
            await self.runtime.gate.drain()

    async def card(self, channel: str = "C0FINANCE", count: int = 1) -> Message:
        await self.settle()

        def ready() -> list[Message] | None:
            cards = self.fake.cards(channel)
            return cards if len(cards) >= count else None

        cards = await self.fake.wait_for(ready)
        return cards[count - 1]

    def ephemerals(self, user: str) -> list[str]:
        return self.fake.ephemerals(user)

    async def request(self, request_id: str) -> Request:
        return await self.runtime.gate.get(request_id)


def action_ids(message: Message) -> set[str]:
    return {e["action_id"] for b in message.blocks if b["type"] == "actions" for e in b["elements"]}


def card_text(message: Message) -> str:
    return json.dumps(message.blocks, ensure_ascii=False)


async def make_env(
    tmp_path: Path,
    fake: FakeSlack,
    aiohttp_client: AiohttpClient,
    undeliverable: Undeliverable | None = None,
    **slack: str,
) -> Env:
    settings = {
        "bot_token": fake.token,
        "signing_secret": SECRET,
        "api_base_url": fake.base_url,
        "escalation_channel": "C0ESCALATE",
        "usergroup_ttl": "60s",
        **slack,
    }
    extra = "slack:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in settings.items())
    config = write_home(tmp_path, policy=POLICY, extra=extra)
    retry = FixedValueRetryIntervalCalculator(0.01)

    def slack_mount(wiring: Wiring) -> Mounted[SlackAdapter]:
        if undeliverable is not None:
            wiring = replace(wiring, undeliverable=undeliverable)
        return mount(wiring, retry_interval=retry)

    runtime = await build(load_settings(config), adapters=False, mounts=[slack_mount])
    adapter = runtime.part(SlackAdapter)
    http = await aiohttp_client(runtime.app)
    _, token = await runtime.gate.register_agent("billing-agent")
    return Env(runtime, adapter, fake, http, token)
