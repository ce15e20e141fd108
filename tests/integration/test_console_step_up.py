"""Security-key step-up (rule option ``step_up: webauthn``, issue 17) in headless Chromium
with a virtual authenticator (Chrome DevTools Protocol ``WebAuthn.addVirtualAuthenticator``
through Playwright): an approver registers a passkey in the console and approves a step-up
rule with it; the attestation carries the signed assertion, which ``audit prove`` includes
and ``examples/verify_offline.py`` checks; assertions for another request, replays and
unregistered keys are refused."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect
from playwright.async_api import Error as PlaywrightError

from bench.fakes.smtp_server import free_port
from bot.domain import Status
from bot.evidence.dsse import b64decode
from tests.integration.console_support import (
    PASSWORD,
    Server,
    running_server,
)

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
DROP = {"tool": "db.drop", "arguments": {"table": "orders"}, "justification": "retire it"}


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    # WebAuthn needs a host name (not an IP address) as its relying party: localhost.
    port = free_port()
    async with running_server(
        tmp_path, listen_port=port, public_url=f"http://localhost:{port}"
    ) as running:
        running.url = f"http://localhost:{port}"
        yield running


async def keyed_page(browser: Browser, server: Server, name: str) -> Page:
    """A logged-in page with its own virtual security key (CTAP2, user verification)."""
    page = await (await browser.new_context()).new_page()
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    await cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "usb",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    await page.goto(server.url + "/console/login")
    await page.fill("input[name=username]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("form.stack button[type=submit]")
    await expect(page).to_have_url(server.url + "/console/")
    # off the inbox, whose poller reloads it when the test submits a request
    await page.goto(server.url + "/console/security-keys")
    return page


async def open_page(page: Page, url: str) -> None:
    """``page.goto(url)``. The inbox reloads itself when a request arrives (console.js), and
    a reload that lands during this navigation aborts it: navigate again then."""
    for _ in range(3):
        try:
            await page.goto(url)
            return
        except PlaywrightError as exc:
            if "ERR_ABORTED" not in str(exc) and "interrupted by another navigation" not in str(
                exc
            ):
                raise
    await page.goto(url)


async def register(page: Page, server: Server) -> None:
    await open_page(page, server.url + "/console/security-keys")
    await page.fill("#label", "virtual key")
    await page.click("#register-key")
    await expect(page.locator("#flash")).to_contain_text("registered")
    await expect(page.locator("#keys")).to_contain_text("virtual key")


async def approve_with_key(page: Page, server: Server, rid: str) -> None:
    await open_page(page, f"{server.url}/console/requests/{rid}")
    await page.fill("#reason", "retiring the table was agreed")
    await page.click("#approve-key")


async def held_assertion(page: Page, server: Server, rid: str) -> str:
    """The assertion the page's key makes for ``rid``, captured instead of submitted."""
    await open_page(page, f"{server.url}/console/requests/{rid}")
    await page.fill("#reason", "ok")
    await page.evaluate(
        "() => { document.getElementById('decide').submit = () => { window.__held = "
        "document.getElementById('assertion').value; }; }"
    )
    await page.click("#approve-key")
    await page.wait_for_function("() => window.__held")
    return str(await page.evaluate("() => window.__held"))


async def test_a_step_up_rule_is_approved_with_a_security_key_and_proven_offline(
    server: Server, browser: Browser, tmp_path: Path
) -> None:
    page = await keyed_page(browser, server, "alice")
    rid = (await server.submit(DROP))["id"]

    await approve_with_key(page, server, rid)  # no key registered yet
    await expect(page.locator("#key-error")).to_contain_text("register a security key first")
    assert (await server.runtime.gate.get(rid)).status is Status.PENDING

    await register(page, server)
    await approve_with_key(page, server, rid)
    await expect(page.locator("#flash")).to_contain_text("You approved")
    answer = await server.wait(rid)
    assert answer["status"] == "approved"

    entries = await server.runtime.store.log_entries_for(rid)
    statement = json.loads(b64decode(json.loads(entries[-1].envelope)["payload"], "payload"))
    step_up = statement["predicate"]["approver"]["step_up"]
    assert step_up["type"] == "webauthn" and step_up["call_sha256"] == answer["call_sha256"]
    (key,) = await server.runtime.wiring.passkeys.passkeys_of("alice")
    assert step_up["credential_id"] == key.credential_id

    # audit prove holds the assertion; the offline verifier checks it with the key recorded.
    home = Path(server.runtime.settings.base_dir)
    config = str(home / "signoff.yaml")
    signoff = str(Path(sys.executable).with_name("signoff"))
    bundle = tmp_path / "bundle.json"
    proved = await asyncio.to_thread(
        subprocess.run,
        [signoff, "--config", config, "audit", "prove", rid],
        capture_output=True,
        text=True,
        check=True,
    )
    bundle.write_text(proved.stdout)
    proven = [
        json.loads(b64decode(e["envelope"]["payload"], "payload"))["predicate"]["approver"]
        for e in json.loads(proved.stdout)["entries"]
    ]
    assert any((a or {}).get("step_up") == step_up for a in proven)
    async with server.http.get(f"{server.url}/v1/keys") as r:
        (tmp_path / "keys.json").write_text(await r.text())
    checked = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            str(ROOT / "examples" / "verify_offline.py"),
            str(bundle),
            str(tmp_path / "keys.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "security key" in checked.stdout


async def test_assertions_for_another_request_replays_and_unknown_keys_are_refused(
    server: Server, browser: Browser
) -> None:
    alice = await keyed_page(browser, server, "alice")
    await register(alice, server)
    first = (await server.submit(DROP))["id"]
    second = (await server.submit({**DROP, "arguments": {"table": "invoices"}}))["id"]

    # Capture a real assertion for the first request instead of submitting it.
    held = await held_assertion(alice, server, first)
    csrf = await alice.locator("input[name=csrf_token]").first.get_attribute("value")
    assert csrf

    async def post(rid: str, assertion: str) -> tuple[int, str]:
        response = await alice.request.post(
            f"{server.url}/console/requests/{rid}/decide",
            form={"csrf_token": csrf, "verdict": "approve", "reason": "ok", "assertion": assertion},
            max_redirects=0,
        )
        return response.status, await response.text()

    # For another request: no challenge is pending there, and its challenge binds its call.
    status, text = await post(second, held)
    assert status == 403 and "security-key challenge" in text
    # Bound to the first call: accepted once...
    status, _ = await post(first, held)
    assert status == 303
    # ...and a replay finds no pending challenge.
    status, text = await post(first, held)
    assert status in (403, 409)

    # Another user's key (bob is not registered for alice's credential) is refused.
    assert (await server.runtime.gate.get(second)).status is Status.PENDING
    carol = await keyed_page(browser, server, "dave")
    await register(carol, server)
    daves = await held_assertion(carol, server, second)
    # alice presents dave's assertion (for her own pending challenge on the second request)
    await alice.goto(f"{server.url}/console/requests/{second}")
    options = await alice.request.post(
        f"{server.url}/console/requests/{second}/step-up/options", form={"csrf_token": csrf}
    )
    assert options.status == 200
    status, text = await post(second, daves)
    assert status == 403 and "not registered to you" in text
    assert (await server.runtime.gate.get(second)).status is Status.PENDING
