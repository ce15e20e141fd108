"""Support for the console tests: a real signoff server (``adapters.main.build`` with every
configured adapter, so the console is mounted) on an ephemeral loopback port, console users,
an agent with its token, and headless Chromium through Playwright's async API."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from playwright.async_api import Browser, Page, expect

from adapters.console.passwords import hash_password
from adapters.main import build
from adapters.runtime import Runtime
from bot.accounts import ConsoleUser
from bot.settings import load_settings
from tests.support import write_home

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
LOGIN_URL = re.compile(r".*/console/login\?next=(/|%2F)console(/|%2F)$")

POLICY = """\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {name: console-test, version: "c1"}
groups:
  finance:
    console: {users: [alice, dave]}
  dba:
    console: {users: [bob]}
  leads:
    console: {users: [carol]}
defaults:
  unknown_tool: confirm
  sla: 15m
  approvers: {groups: [leads]}
rules:
  - name: reads
    tool: "*.read"
    tier: auto
  - name: large-transfer
    tool: payments.transfer
    tier: confirm
    approvers: {groups: [finance]}
    sla: 15m
  - name: production-delete
    tool: db.delete
    tier: confirm
    approvers: {groups: [dba]}
    sla: 30m
  - name: editable-payout
    tool: payments.payout
    tier: confirm
    editable: true
    approvers: {groups: [finance]}
  - name: editable-wire
    tool: payments.wire
    tier: confirm
    editable: true
    approvers: {groups: [finance], quorum: 2}
  - name: keyed-drop
    tool: db.drop
    tier: confirm
    step_up: webauthn
    approvers: {groups: [finance]}
"""

TRANSFER: dict[str, Any] = {
    "tool": "payments.transfer",
    "arguments": {"amount": 25000, "currency": "USD", "to": "acct-123"},
    "justification": "Refund for order 8812 approved by support ticket 4471",
    "context": {"requested_by": "user@example.com", "session_id": "s-1"},
}


@dataclass
class Server:
    runtime: Runtime
    url: str
    token: str
    http: aiohttp.ClientSession

    async def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(
            f"{self.url}/v1/requests", json=body, headers=self.auth
        ) as response:
            assert response.status == 201, await response.text()
            data: dict[str, Any] = await response.json()
            return data

    async def wait(self, request_id: str, seconds: int = 30) -> dict[str, Any]:
        async with self.http.get(
            f"{self.url}/v1/requests/{request_id}?wait={seconds}", headers=self.auth
        ) as response:
            assert response.status == 200, await response.text()
            data: dict[str, Any] = await response.json()
            return data

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def add_users(runtime: Runtime, *names: str, password: str = PASSWORD) -> None:
    users = runtime.users
    hashed = hash_password(password)
    for name in names:
        await users.add_user(ConsoleUser(name, hashed, datetime.now(UTC)))


@contextlib.asynccontextmanager
async def running_server(
    root: Path, *, listen_port: int = 0, **server: Any
) -> AsyncIterator[Server]:
    """The server; ``server`` overrides fields of ``settings.server``; ``listen_port`` fixes
    the port (0: any free one)."""
    settings = load_settings(write_home(root, policy=POLICY))
    settings = dataclasses.replace(settings, server=dataclasses.replace(settings.server, **server))
    runtime = await build(settings)
    await add_users(runtime, "alice", "bob", "carol", "dave")
    _, token = await runtime.gate.register_agent("billing-agent")
    runner = web.AppRunner(runtime.app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", listen_port)
    await site.start()
    host, port = runner.addresses[0][:2]
    http = aiohttp.ClientSession()
    try:
        yield Server(runtime, f"http://{host}:{port}", token, http)
    finally:
        await http.close()
        await runner.cleanup()
        await runtime.gate.drain()
        await runtime.store.close()


async def http_login(
    http: aiohttp.ClientSession,
    url: str,
    name: str = "alice",
    *,
    headers: dict[str, str] | None = None,
) -> aiohttp.ClientResponse:
    """Sign ``name`` in through the form over plain HTTP; the answer (303 on success)."""
    async with http.get(f"{url}/console/login", headers=headers) as page:
        match = TOKEN.search(await page.text())
        assert match is not None
        login_cookie = page.cookies["signoff_login"].value
    # sent by hand: a jar keeps Secure cookies away from this plain-http test server
    return await http.post(
        f"{url}/console/login",
        data={
            "csrf_token": match.group(1),
            "username": name,
            "password": PASSWORD,
            "next": "/console/audit",
        },
        headers={**(headers or {}), "Cookie": f"signoff_login={login_cookie}"},
        allow_redirects=False,
    )


def fresh_session() -> aiohttp.ClientSession:
    """A client session whose cookie jar keeps cookies for an IP address host."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def browser_login(
    browser: Browser, server: Server, name: str, password: str = PASSWORD
) -> Page:
    """Sign ``name`` in through the form in a new browser context; the console page."""
    page = await (await browser.new_context()).new_page()
    await page.goto(server.url + "/console/")
    await expect(page).to_have_url(LOGIN_URL)
    await page.fill("input[name=username]", name)
    await page.fill("input[name=password]", password)
    await page.click("form.stack button[type=submit]")
    await expect(page).to_have_url(server.url + "/console/")
    return page
