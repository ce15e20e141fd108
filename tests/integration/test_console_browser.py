"""The approver console in headless Chromium against a real signoff server (SPEC §8 Console).

An agent submits over HTTP; a console user logs in, decides in the browser, and the agent's
long-poll sees the result; the audit browser shows and verifies the attestation.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from bot.domain import Status
from tests.integration.console_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LOGIN_URL,
    PASSWORD,
    TRANSFER,
    Server,
    running_server,
)
from tests.integration.console_support import browser_login as login

pytestmark = pytest.mark.browser


DELETE = {
    "tool": "db.delete",
    "arguments": {"schema": "production", "table": "orders", "where": "id = 7"},
    "justification": "GDPR erasure request 99",
}


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path) as running:
        yield running


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def csrf_of(page: Page) -> str:
    token = await page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    return token


async def test_approve_in_the_browser_releases_the_agent_and_verifies_in_the_audit_log(
    server: Server, browser: Browser
) -> None:
    page = await login(browser, server, "alice")
    cookies = {c["name"]: c for c in await page.context.cookies()}
    session = cookies["signoff_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and not session["secure"]

    created = await server.submit(TRANSFER)
    rid = created["id"]
    # no reload: the inbox's long-poll sees the ConsoleChannel's notice and refreshes
    link = page.locator(f"a[href='/console/requests/{rid}']")
    await expect(link).to_have_text("payments.transfer", timeout=10_000)
    await expect(page.locator("time.deadline").first).to_contain_text("left")
    await link.click()

    await expect(page.locator("#arguments")).to_contain_text('"amount": 25000')
    await expect(page.locator("#args-sha")).to_have_text(created["arguments_sha256"])
    await expect(page.locator("#justification")).to_have_text(TRANSFER["justification"])
    await expect(page.locator("#context")).to_contain_text("user@example.com")
    await expect(page.locator("#progress")).to_have_text("0 of 1 required")
    await expect(page.locator("body")).to_contain_text("large-transfer")
    await expect(page.locator("body")).to_contain_text(created["policy"]["digest"])

    waiter = asyncio.create_task(server.wait(rid))
    await page.fill("#reason", "matches ticket 4471")
    await page.click("#approve")
    await expect(page.locator("#flash")).to_have_text("You approved this request.")
    await expect(page.locator("#status")).to_have_text("approved")
    await expect(page.locator("#votes")).to_contain_text("matches ticket 4471")

    result = await asyncio.wait_for(waiter, 30)
    assert result["status"] == "approved"
    assert result["grant"]

    entries = await server.runtime.store.log_entries_for(rid)
    index = entries[-1].index
    await expect(page.locator("#attestations")).to_contain_text(f"#{index}")

    await page.click("nav >> text=Audit log")
    top = page.locator("#entries tbody tr").first
    await expect(top).to_contain_text("approved")
    await expect(top).to_contain_text("payments.transfer")
    await expect(top).to_contain_text("alice")
    await page.goto(f"{server.url}/console/audit?decision=approved&tool=payments")
    await expect(page.locator("#entries tbody tr")).to_have_count(1)
    await page.click(f"a[href='/console/audit/{index}']")
    await expect(page.locator("#proof-result")).to_contain_text("Proof verifies")
    await expect(page.locator("#envelope")).to_contain_text("console_login")
    await expect(page.locator("#envelope")).to_contain_text(created["call_sha256"])

    await page.goto(server.url + "/console/audit")
    await page.click("#verify")
    await expect(page.locator("#verify-result")).to_contain_text("Log intact")

    await page.goto(server.url + "/console/report")
    await expect(page.locator("#stat-requests")).to_have_text("1")
    await expect(page.locator("#stat-rate")).to_have_text("100%")
    await expect(page.locator("#chart-ttd rect")).to_have_count(8)

    await page.click("text=Sign out")
    await expect(page).to_have_url(server.url + "/console/login")
    await page.goto(server.url + "/console/")
    await expect(page).to_have_url(LOGIN_URL)


async def test_deny_needs_a_reason_and_reaches_the_agent(server: Server, browser: Browser) -> None:
    created = await server.submit(TRANSFER)
    rid = created["id"]
    page = await login(browser, server, "alice")
    token = await csrf_of(page)

    empty = await page.request.post(
        f"{server.url}/console/requests/{rid}/decide",
        form={"csrf_token": token, "verdict": "deny", "reason": "   "},
    )
    assert empty.status == 400
    assert "reason is required" in await empty.text()
    assert (await server.runtime.gate.get(rid)).status is Status.PENDING

    await page.goto(f"{server.url}/console/requests/{rid}")
    await page.fill("#reason", "amount does not match the ticket")
    await page.click("#deny")
    await expect(page.locator("#status")).to_have_text("denied")
    result = await server.wait(rid, 5)
    assert result["status"] == "denied"
    assert result["reason"] == "amount does not match the ticket"

    # a second vote on a decided request is refused with a message, not an error page
    again = await page.request.post(
        f"{server.url}/console/requests/{rid}/decide",
        form={"csrf_token": token, "verdict": "approve", "reason": "changed my mind"},
    )
    assert again.status == 409
    assert "already" in await again.text()


async def test_requester_cannot_approve_their_own_call(server: Server, browser: Browser) -> None:
    body = copy.deepcopy(TRANSFER)
    body["context"]["requested_by"] = "alice"
    rid = (await server.submit(body))["id"]
    page = await login(browser, server, "alice")
    await page.goto(f"{server.url}/console/requests/{rid}")
    await page.fill("#reason", "looks fine")
    await page.click("#approve")
    await expect(page.locator("#error")).to_contain_text("someone else must decide")
    assert (await server.runtime.gate.get(rid)).status is Status.PENDING
    assert await server.runtime.store.votes(rid) == []


async def test_non_member_can_neither_see_nor_decide(server: Server, browser: Browser) -> None:
    rid = (await server.submit(DELETE))["id"]
    page = await login(browser, server, "carol")  # leads, not dba
    await expect(page.locator("body")).not_to_contain_text("db.delete")
    await expect(page.locator("a[href^='/console/requests/']")).to_have_count(0)

    response = await page.goto(f"{server.url}/console/requests/{rid}")
    assert response is not None and response.status == 404
    token = await csrf_of(page)
    forged = await page.request.post(
        f"{server.url}/console/requests/{rid}/decide",
        form={"csrf_token": token, "verdict": "approve", "reason": "I can see it now"},
    )
    assert forged.status == 404
    assert (await server.runtime.gate.get(rid)).status is Status.PENDING
    assert await server.runtime.store.votes(rid) == []

    # the member sees it
    bob = await login(browser, server, "bob")
    await expect(bob.locator(f"a[href='/console/requests/{rid}']")).to_have_count(1)


async def test_forms_without_the_csrf_token_are_refused(server: Server, browser: Browser) -> None:
    rid = (await server.submit(TRANSFER))["id"]
    page = await login(browser, server, "alice")
    url = f"{server.url}/console/requests/{rid}/decide"
    forged: list[dict[str, str | float | bool]] = [
        {"verdict": "approve", "reason": "forged"},
        {"csrf_token": "not-the-token", "verdict": "approve", "reason": "forged"},
        {"csrf_token": "", "verdict": "approve", "reason": "forged"},
    ]
    for form in forged:
        refused = await page.request.post(url, form=form)
        assert refused.status == 403
    assert (await server.runtime.gate.get(rid)).status is Status.PENDING
    assert await server.runtime.store.votes(rid) == []

    logout = await page.request.post(f"{server.url}/console/logout", form={})
    assert logout.status == 403
    verify = await page.request.post(f"{server.url}/console/audit/verify", form={})
    assert verify.status == 403
    # still logged in: the forged logout changed nothing
    await page.goto(server.url + "/console/")
    await expect(page).to_have_url(server.url + "/console/")

    # a cross-site page posting the form gets no session cookie (SameSite=Strict)
    await page.set_content(
        f'<form method="post" action="{url}"><input name="verdict" value="approve">'
        '<input name="reason" value="cross-site"></form>'
    )
    await page.evaluate("document.forms[0].submit()")
    await page.wait_for_load_state()
    assert (await server.runtime.gate.get(rid)).status is Status.PENDING


HOSTILE = '<script>window.__pwned = 1</script>"\' onmouseover="window.__pwned = 2" &amp;'


async def test_hostile_agent_text_renders_inert(server: Server, browser: Browser) -> None:
    big = "A" * 20_000 + "<img src=x onerror='window.__pwned = 3'>"
    body: dict[str, Any] = {
        "tool": "payments.transfer",
        "arguments": {"amount": 1, "note": HOSTILE, "blob": big},
        "justification": HOSTILE,
        "context": {"prompt": "</pre><script>window.__pwned = 4</script>", "big": big},
    }
    rid = (await server.submit(body))["id"]
    page = await login(browser, server, "alice")
    await expect(page.locator("td.clip").first).to_contain_text("<script>")
    await page.goto(f"{server.url}/console/requests/{rid}")
    await expect(page.locator("#justification")).to_have_text(HOSTILE)
    arguments = await page.locator("#arguments").inner_text()
    assert "A" * 20_000 in arguments and "<img src=x" in arguments
    await expect(page.locator("#context")).to_contain_text("</pre><script>")
    assert await page.locator("script").count() == 1  # console.js only
    assert await page.locator("img").count() == 0
    await page.hover("#justification")
    assert await page.evaluate("window.__pwned") is None
    # the deny reason is agent-independent but shown back too: escape it as well
    await page.fill("#reason", HOSTILE)
    await page.click("#deny")
    await expect(page.locator("#votes")).to_contain_text(HOSTILE)
    await page.goto(server.url + "/console/audit")
    assert await page.evaluate("window.__pwned") is None
    assert await page.locator("script").count() == 1


async def test_failed_logins_are_throttled_with_one_generic_message(
    server: Server, browser: Browser
) -> None:
    page = await (await browser.new_context()).new_page()
    messages = set()
    for _ in range(3):
        await page.goto(server.url + "/console/login")
        await page.fill("input[name=username]", "alice")
        await page.fill("input[name=password]", "wrong password")
        async with page.expect_response(lambda r: r.request.method == "POST") as info:
            await page.click("form.stack button[type=submit]")
        assert (await info.value).status == 401
        messages.add(await page.locator("#login-error").inner_text())

    # now locked: even the right password is refused, with the same message
    await page.goto(server.url + "/console/login")
    await page.fill("input[name=username]", "alice")
    await page.fill("input[name=password]", PASSWORD)
    async with page.expect_response(lambda r: r.request.method == "POST") as info:
        await page.click("form.stack button[type=submit]")
    assert (await info.value).status == 429
    messages.add(await page.locator("#login-error").inner_text())
    assert "signoff_session" not in {c["name"] for c in await page.context.cookies()}

    # an unknown user gets that same message
    await page.goto(server.url + "/console/login")
    await page.fill("input[name=username]", "nobody")
    await page.fill("input[name=password]", "whatever-123")
    await page.click("form.stack button[type=submit]")
    messages.add(await page.locator("#login-error").inner_text())
    assert len(messages) == 1

    # another user from the same address is not locked out
    await login(browser, server, "bob")
