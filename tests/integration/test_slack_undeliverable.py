"""A Slack card that cannot be delivered escalates sooner (SPEC §8), through the composition
root's wiring, against the fake Slack Web API; it never allows anything."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from pytest_aiohttp import AiohttpClient

from adapters.main import build
from bench.fakes.slack_api import FakeSlack
from bot.domain import Event, Status
from bot.settings import load_settings
from tests.support import write_home

SECRET = "0123456789abcdef0123456789abcdef"
POLICY = """\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {name: early, version: "e1"}
groups:
  finance:
    slack: {channel: C0FINANCE, users: [U0ALICE]}
  leads:
    slack: {channel: C0LEADS, users: [U0CAROL]}
defaults: {unknown_tool: block}
rules:
  - name: large-transfer
    tool: payments.transfer
    tier: confirm
    approvers: {groups: [finance]}
    sla: 30m
    escalation:
      - {after: 10m, to: leads, page: true}
      - {after: 30m, action: deny}
"""


async def test_undeliverable_card_brings_the_next_step_forward(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    fake = FakeSlack()
    await fake.start()
    try:
        extra = "slack:\n" + "".join(
            f"  {k}: {json.dumps(v)}\n"
            for k, v in {
                "bot_token": fake.token,
                "signing_secret": SECRET,
                "api_base_url": fake.base_url,
                "escalation_channel": "C0ESCALATE",
            }.items()
        )
        runtime = await build(load_settings(write_home(tmp_path, policy=POLICY, extra=extra)))
        http = await aiohttp_client(runtime.app)
        _, token = await runtime.gate.register_agent("billing-agent")
        # the bot was never invited to the finance channel: Slack refuses the card
        fake.inject("chat.postMessage", status=200, error="not_in_channel", times=1)
        resp = await http.post(
            "/v1/requests",
            json={"tool": "payments.transfer", "arguments": {"amount": 25000}},
            headers={"Authorization": f"Bearer {token}"},
        )
        rid = (await resp.json())["id"]

        async def escalated() -> bool:
            request = await runtime.gate.get(rid)
            return request.steps_done == 1

        for _ in range(100):
            await runtime.gate.drain()
            if await escalated():
                break
            await asyncio.sleep(0.05)
        request = await runtime.gate.get(rid)
        assert request.status is Status.PENDING  # never allowed by a failure
        assert request.extra_groups == ("leads",)
        events = [e.event for e in await runtime.store.log_entries_for(rid)]
        assert events == [Event.ESCALATED]
        await fake.wait_for(lambda: fake.cards("C0LEADS") or None)
        pages = [
            c for c in fake.ok_calls("chat.postMessage") if c.args.get("channel") == "C0ESCALATE"
        ]
        for _ in range(100):
            if pages:
                break
            await asyncio.sleep(0.05)
            await runtime.gate.drain()
            pages = [
                c
                for c in fake.ok_calls("chat.postMessage")
                if c.args.get("channel") == "C0ESCALATE"
            ]
        assert pages and "<!here>" in json.dumps(pages[0].args)
        await runtime.gate.drain()
        await runtime.store.close()
    finally:
        await fake.close()
