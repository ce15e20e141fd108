"""Support for the people tests: a server with the Slack adapter (against the fake Slack
Web API) and the console, console users with a password, and an agent with its token."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pytest_aiohttp import AiohttpClient
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator

from adapters.console import mount as mount_console
from adapters.console.passwords import hash_password
from adapters.main import build
from adapters.runtime import Runtime
from adapters.slack import SlackAdapter
from adapters.slack import mount as mount_slack
from adapters.slack.cards import ACTION_APPROVE
from bench.fakes.slack_api import FakeSlack
from bench.fakes.slack_payloads import block_actions, form, sign
from bot.accounts import ConsoleUser
from bot.domain import Status
from bot.settings import load_settings
from tests.support import AppClient, write_home

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
PASSWORD = "correct horse battery"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Env:
    runtime: Runtime
    slack: SlackAdapter
    fake: FakeSlack
    http: AppClient
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
        return self.fake.ephemerals(user)

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


async def start_fake() -> FakeSlack:
    """The fake Slack with the users and user group the people tests use."""
    slack = FakeSlack()
    await slack.start()
    slack.add_user("U0ALICE", "alice", "alice@example.com")
    slack.add_user("U0CAROL", "carol", "carol@example.com")
    slack.add_user("U0BOBSLACK", "bob", "Bob@Example.com")  # no slack id in people
    slack.add_user("U0MALLORY", "mallory", "mallory@example.com")
    slack.add_user("U0LEGACY", "lee", "lee@example.com")
    slack.add_usergroup("S0FINANCE", ["U0BOBSLACK"])
    return slack


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, fake: FakeSlack, aiohttp_client: AiohttpClient, policy: str
) -> AsyncIterator[Env]:
    settings = {
        "bot_token": fake.token,
        "signing_secret": SECRET,
        "api_base_url": fake.base_url,
        "usergroup_ttl": "60s",
    }
    extra = "slack:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in settings.items())
    runtime = await build(
        load_settings(write_home(tmp_path, policy=policy, extra=extra)),
        adapters=False,
        mounts=[
            lambda w: mount_slack(w, retry_interval=FixedValueRetryIntervalCalculator(0.01)),
            mount_console,
        ],
    )
    adapter = runtime.part(SlackAdapter)
    users = runtime.users
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
