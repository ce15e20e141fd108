"""Done when (issue 17): an approver edits an amount in the console, in headless Chromium,
and the agent's tool (``require_approval`` over the Python client) runs with the edited
amount; the client's log names both digests."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, expect

from adapters.agent import AsyncSignoff, require_approval
from bot.domain import Status
from bot.evidence.canonical import arguments_sha256
from tests.integration.console_support import Server, running_server
from tests.integration.console_support import browser_login as login

pytestmark = pytest.mark.browser


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path) as running:
        yield running


async def test_an_amount_edited_in_the_console_is_what_the_tool_runs_with(
    server: Server, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[int] = []
    caplog.set_level(logging.INFO, logger="adapters.agent.approval")
    async with AsyncSignoff(server.url, server.token) as client:

        @require_approval(client, tool="payments.payout", justification="refund order 8812")
        async def payout(amount: int, currency: str, to: str) -> str:
            ran.append(amount)
            return f"paid {amount} {currency} to {to}"

        agent = asyncio.create_task(payout(25000, "USD", "acct-123"))
        while not (pending := await server.runtime.store.list_requests(status=Status.PENDING)):
            assert not agent.done(), agent
            await asyncio.sleep(0.05)
        (request,) = pending

        page = await login(browser, server, "alice")
        await page.goto(f"{server.url}/console/requests/{request.id}")
        await page.click("#edit-box summary")
        editor = page.locator("#edited")
        await editor.fill("{not json")
        await expect(page.locator("#approve-edited")).to_be_disabled()  # the editor validates
        await expect(page.locator("#edited-error")).to_contain_text("Not valid JSON")
        edited = {"amount": 1200, "currency": "USD", "to": "acct-123"}
        await editor.fill(json.dumps({"tool": "payments.payout", "arguments": edited}))
        await page.fill("#reason", "pay the refund, not the whole order")
        await page.click("#approve-edited")
        await expect(page.locator("#flash")).to_contain_text("edited arguments")
        await expect(page.locator("#edited-by")).to_contain_text("alice")

        result = await asyncio.wait_for(agent, 30)
    assert ran == [1200] and result == "paid 1200 USD to acct-123"
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert request.arguments_sha256 in logged and arguments_sha256(edited) in logged
    final = await server.runtime.gate.get(request.id)
    assert final.outcome is not None and final.outcome.value == "succeeded"
