"""A signoff server with only the Teams adapter mounted, wired to ``FakeBotFramework``.

``teams_env`` writes a home whose policy routes group ``finance`` (Alice and Bob) and
``leads`` (Carol) to conversations on the fake's service URL, builds the runtime, mounts
``adapters.teams`` and serves ``runtime.app`` over loopback HTTP with aiohttp's test client.
``TeamsEnv`` then speaks for the agent (submit, long-poll) and for Teams (signed activities
posted to ``/api/messages``).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_aiohttp import AiohttpClient

from adapters.main import build
from adapters.runtime import Runtime
from adapters.teams import TeamsChannel, mount
from bot.domain import Platform, Post
from bot.settings import load_settings
from tests.fakes.bot_connector import FakeBotFramework, Message
from tests.support import AppClient, write_home

APP_ID = "5a1b0c2d-0000-4000-8000-00000000a991"
APP_PASSWORD = "fake-app-password"
TENANT = "11111111-2222-3333-4444-555555555555"
OTHER_TENANT = "99999999-8888-7777-6666-555555555555"
ALICE = "aaaaaaaa-0000-4000-8000-00000000a11c"
BOB = "bbbbbbbb-0000-4000-8000-000000000b0b"
CAROL = "cccccccc-0000-4000-8000-00000000ca10"
MALLORY = "dddddddd-0000-4000-8000-0000000bad00"
FINANCE = "19:finance@thread.tacv2"
LEADS = "19:leads@thread.tacv2"
VALID = "<a fresh valid token>"
NAMES = {ALICE: "Alice", BOB: "Bob", CAROL: "Carol", MALLORY: "Mallory"}

POLICY = """\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {{name: teams-test, version: "tt1"}}
groups:
  finance:
    teams: {{service_url: "{url}", conversation_id: "{finance}", users: [{alice}, {bob}]}}
  leads:
    teams: {{service_url: "{url}", conversation_id: "{leads}", users: [{carol}]}}
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
    approvers: {{groups: [finance], quorum: 2}}
  - name: editable-payout
    tool: payments.payout
    tier: confirm
    editable: true
    approvers: {{groups: [finance]}}
  - name: notify-email
    tool: email.send
    tier: notify
    approvers: {{groups: [finance]}}
"""


@dataclass
class TeamsEnv:
    fake: FakeBotFramework
    runtime: Runtime
    channel: TeamsChannel
    client: AppClient
    agent_token: str
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    # ---------------------------------------------------------------- the agent

    async def submit(self, tool: str, arguments: dict[str, Any], **extra: Any) -> dict[str, Any]:
        resp = await self.client.post(
            "/v1/requests",
            json={"tool": tool, "arguments": arguments, **extra},
            headers={"Authorization": f"Bearer {self.agent_token}"},
        )
        assert resp.status == 201, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body

    async def poll(self, request_id: str, wait: int = 10) -> dict[str, Any]:
        resp = await self.client.get(
            f"/v1/requests/{request_id}?wait={wait}",
            headers={"Authorization": f"Bearer {self.agent_token}"},
        )
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body

    # ---------------------------------------------------------------- Teams

    async def posts(self, request_id: str, count: int = 1) -> list[Post]:
        async def stored() -> list[Post]:
            return list(await self.runtime.store.posts(request_id, Platform.TEAMS))

        found: list[Post] = []

        async def enough() -> bool:
            nonlocal found
            found = await stored()
            return len(found) >= count

        await _until(enough)
        return found

    async def card_message(self, request_id: str) -> Message:
        (post,) = await self.posts(request_id)
        return self.fake.messages[post.message_id]

    def activity(
        self,
        verb: str,
        request_id: str,
        user: str,
        *,
        reason: str | None = None,
        tenant: str = TENANT,
        conversation: str = FINANCE,
        data: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        data = {"request_id": request_id, **(data or {})}
        if reason is not None:
            data["reason"] = reason
        return {
            "type": "invoke",
            "name": "adaptiveCard/action",
            "id": f"f:{next(self._ids)}",
            "channelId": "msteams",
            "serviceUrl": self.fake.service_url,
            "from": {"id": f"29:{user}", "name": NAMES.get(user, "Someone"), "aadObjectId": user},
            "recipient": {"id": f"28:{APP_ID}", "name": "signoff"},
            "conversation": {
                "id": f"{conversation};messageid=1",
                "conversationType": "channel",
                "tenantId": tenant,
                "isGroup": True,
            },
            "channelData": {"tenant": {"id": tenant}},
            "value": {
                "action": {"type": "Action.Execute", "verb": verb, "data": data},
                "trigger": "manual",
            },
        }

    async def send(self, activity: dict[str, Any], token: str | None = VALID) -> tuple[int, Any]:
        """Post ``activity`` with ``token`` (a fresh valid one by default; None: no header)."""
        headers = {}
        if token is VALID:
            token = self.fake.inbound_token()
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        resp = await self.client.post("/api/messages", json=activity, headers=headers)
        text = await resp.text()
        try:
            return resp.status, await resp.json(content_type=None)
        except ValueError:
            return resp.status, text

    async def click(self, verb: str, request_id: str, user: str, **kw: Any) -> dict[str, Any]:
        """An authenticated card action; returns the invoke response body (HTTP 200)."""
        status, body = await self.send(self.activity(verb, request_id, user, **kw))
        assert status == 200, body
        assert isinstance(body, dict)
        return body


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    import asyncio

    end = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError("condition never became true")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def teams_env(
    tmp_path: Path,
    aiohttp_client: AiohttpClient,
    *,
    insecure: bool = False,
    teams_extra: str = "",
    policy_template: str = POLICY,
    escalation: bool = False,
) -> AsyncIterator[TeamsEnv]:
    """``teams_extra``: more ``teams:`` keys, one ``key: value`` per line (``{service_url}``
    stands for the fake's service URL). ``policy_template`` is formatted like ``POLICY``.
    ``escalation``: wire every configured adapter as ``signoff serve`` does (escalation
    included), instead of Teams alone."""
    fake = await FakeBotFramework(app_id=APP_ID, app_password=APP_PASSWORD).start()
    try:
        policy = policy_template.format(
            url=fake.service_url, finance=FINANCE, leads=LEADS, alice=ALICE, bob=BOB, carol=CAROL
        )
        config = write_home(
            tmp_path,
            policy=policy,
            extra=f"""\
teams:
  app_id: "{APP_ID}"
  app_password: "{APP_PASSWORD}"
  tenant_id: "{TENANT}"
  jwks_url: "{fake.jwks_url}"
  token_url: "{fake.token_url}"
  insecure_dev_disable_auth: {"true" if insecure else "false"}
"""
            + "".join(
                f"  {line.strip()}\n"
                for line in teams_extra.format(service_url=fake.service_url).splitlines()
                if line.strip()
            ),
        )
        settings = load_settings(config)
        runtime = await (
            build(settings) if escalation else build(settings, adapters=False, mounts=[mount])
        )
        try:
            channel = runtime.part(TeamsChannel)
            channel.connector.base_delay = 0.01  # keep injected-failure retries quick
            client = await aiohttp_client(runtime.app)
            _, token = await runtime.gate.register_agent("billing-agent")
            yield TeamsEnv(fake, runtime, channel, client, token)
            await runtime.gate.drain()
        finally:
            await runtime.store.close()
    finally:
        await fake.stop()


def card_text(card: dict[str, Any] | None) -> str:
    """Every TextBlock and TextRun text of an Adaptive Card, run together."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("TextBlock", "TextRun"):
                out.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(card)
    return "".join(out)


def verbs(card: dict[str, Any] | None) -> set[str]:
    """The ``Action.Execute`` verbs a card offers, including inside show-card actions."""
    found: set[str] = set()
    for action in (card or {}).get("actions", []):
        if action.get("verb"):
            found.add(action["verb"])
        for inner in action.get("card", {}).get("actions", []):
            found.add(inner["verb"])
    return found
