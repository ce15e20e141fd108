"""Take the console screenshots for the docs: docs/console-inbox.png, docs/console-detail.png,
docs/console-report.png, docs/console-edit.png (editing before approving), docs/console-keys.png
(registering a security key), and for the email
channel docs/email-message.png (an approval message) and docs/email-confirm.png (the page a
link opens).

Starts a throwaway signoff server (temporary home, example policy, demo users) on a free
loopback port, submits a few requests as an agent, decides some of them as console users, and
photographs the pages in headless Chromium (Debian's /usr/bin/chromium through Playwright).

    .venv/bin/python scripts/screenshots.py [OUT_DIR]     # default: docs/
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from playwright.async_api import async_playwright

from adapters.console.passwords import hash_password
from adapters.email.links import Link, make_link
from adapters.email.message import Links, approval_message
from adapters.home import CONFIG_TEMPLATE, example_policy
from adapters.main import build
from bot.domain import Approver, Platform, Verdict
from bot.evidence.keys import KeyRing
from bot.settings import load_settings
from bot.store.users import ConsoleUser, UserStore

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = (
    "console-inbox.png",
    "console-detail.png",
    "console-report.png",
    "console-edit.png",
    "console-keys.png",
    "email-message.png",
    "email-confirm.png",
)
PASSWORD = "demo-password"  # noqa: S105 - a throwaway local server

CALLS: list[dict[str, Any]] = [
    {
        "tool": "payments.transfer",
        "arguments": {"amount": 25000, "currency": "USD", "to": "acct-123", "memo": "order 8812"},
        "justification": "Refund for order 8812 approved by support ticket 4471",
        "context": {"requested_by": "dana@example.com", "session_id": "c9a1f", "ticket": 4471},
    },
    {
        "tool": "payments.transfer",
        "arguments": {"amount": 48000, "currency": "EUR", "to": "acct-991"},
        "justification": "Quarterly supplier invoice INV-2026-118",
        "context": {"requested_by": "erik@example.com"},
    },
    {
        "tool": "payments.transfer",
        "arguments": {"amount": 12500, "currency": "USD", "to": "acct-555"},
        "justification": "Customer overpayment refund, case 1207",
        "context": {"requested_by": "dana@example.com"},
    },
    {
        "tool": "db.delete",
        "arguments": {"schema": "production", "table": "sessions", "where": "expired = true"},
        "justification": "Clear expired sessions (cleanup job failed)",
    },
]


EDITABLE = """\
apiVersion: signoff/v1
kind: ToolPolicy
rules:
  - name: refund-payout
    description: Refunds need finance; the approver may lower the amount before approving.
    tool: payments.payout
    tier: confirm
    editable: true
    approvers: {groups: [finance]}
"""
PAYOUT: dict[str, Any] = {
    "tool": "payments.payout",
    "arguments": {"amount": 25000, "currency": "USD", "to": "acct-123"},
    "justification": "Refund for order 8812 (customer asked for the damaged items only)",
    "context": {
        "requested_by": "dana@example.com",
        "arguments_schema": {
            "type": "object",
            "properties": {
                "amount": {"type": "integer", "minimum": 1, "maximum": 50000},
                "currency": {"enum": ["USD", "EUR"]},
                "to": {"type": "string"},
            },
            "required": ["amount", "currency", "to"],
        },
    },
}


def prepare_home(home: Path) -> None:
    (home / "policies").mkdir()
    (home / "policies" / "example.yaml").write_text(example_policy(), encoding="utf-8")
    (home / "policies" / "refunds.yaml").write_text(EDITABLE, encoding="utf-8")
    # The email channel on (so /email/decide exists); no group here routes to email, so
    # nothing is ever sent to this unused port.
    config = CONFIG_TEMPLATE.replace("${SIGNOFF_SMTP_URL}", "smtp://127.0.0.1:9")
    (home / "signoff.yaml").write_text(config, encoding="utf-8")
    KeyRing.create(home / "keys")


async def main(home: Path, out: Path) -> None:
    runtime = await build(load_settings(home / "signoff.yaml"))
    users = UserStore(runtime.store)
    hashed = hash_password(PASSWORD)
    for name in ("alice", "bob", "carol"):
        await users.add_user(ConsoleUser(name, hashed, datetime.now(UTC)))
    _, token = await runtime.gate.register_agent(
        "billing-agent", artifact_digest="sha256:" + "5e" * 32
    )
    runner = web.AppRunner(runtime.app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}"
    try:
        ids = []
        async with aiohttp.ClientSession() as http:
            for call in [*CALLS, PAYOUT]:
                async with http.post(
                    f"{url}/v1/requests", json=call, headers={"Authorization": f"Bearer {token}"}
                ) as r:
                    ids.append((await r.json())["id"])
            for tool in ("crm.read", "crm.read", "payments.transfer"):
                body = {"tool": tool, "arguments": {"id": 42, "amount": 50}}
                async with http.post(
                    f"{url}/v1/requests", json=body, headers={"Authorization": f"Bearer {token}"}
                ):
                    pass
        bob = Approver(Platform.CONSOLE, "console", "bob", "bob", via="console_login")
        await runtime.gate.decide(
            ids[3], bob, Verdict.APPROVE, "cleanup is overdue", memberships={"dba"}
        )
        payout = await runtime.gate.get(ids[-1])
        deadline = int(payout.deadline.timestamp()) if payout.deadline else 0
        token = make_link(
            Link(
                payout.id,
                "alice",
                "alice@example.com",
                Verdict.APPROVE,
                payout.current_sha256,
                deadline,
            ),
            runtime.gate.keys,
        )
        message = approval_message(
            payout,
            to="alice@example.com",
            sender="signoff@example.com",
            links=Links(f"{url}/email/decide?t={token}", f"{url}/email/decide?t=…", url),
            received=0,
        )
        html = message.get_body(("html",))
        if html is None:
            raise SystemExit("the approval message has no HTML part")
        await shoot(url, ids[0], out, payout.id, str(html.get_content()), token)
    finally:
        await runner.cleanup()
        await runtime.gate.drain()
        await runtime.store.close()


async def shoot(
    url: str, request_id: str, out: Path, payout: str, email_html: str, token: str
) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await page.goto(f"{url}/console/login")
        await page.fill("input[name=username]", "alice")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("form.stack button[type=submit]")
        await page.wait_for_url(f"{url}/console/")
        await page.screenshot(path=str(out / "console-inbox.png"))
        await page.goto(f"{url}/console/requests/{request_id}")
        await page.fill("#reason", "matches support ticket 4471")
        await page.screenshot(path=str(out / "console-detail.png"), full_page=True)
        await page.click("#approve")
        await page.goto(f"{url}/console/report")
        await page.screenshot(path=str(out / "console-report.png"), full_page=True)
        await page.goto(f"{url}/console/requests/{payout}")
        await page.click("#edit-box summary")
        await page.fill(
            "#edited",
            '{\n  "tool": "payments.payout",\n  "arguments": {\n    "amount": 1200,\n'
            '    "currency": "USD",\n    "to": "acct-123"\n  }\n}',
        )
        await page.fill("#reason", "refund the damaged items only (1,200 USD)")
        await page.screenshot(path=str(out / "console-edit.png"), full_page=True)
        await page.goto(f"{url}/console/security-keys")
        await page.fill("#label", "YubiKey 5C")
        await page.screenshot(path=str(out / "console-keys.png"))
        mail = await browser.new_page(viewport={"width": 900, "height": 800})
        await mail.set_content(email_html)
        await mail.screenshot(path=str(out / "email-message.png"), full_page=True)
        await mail.goto(f"{url}/email/decide?t={token}")
        await mail.fill("#reason", "matches the ticket")
        await mail.screenshot(path=str(out / "email-confirm.png"), full_page=True)
        await browser.close()
    for name in SHOTS:
        print(out / name)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs")
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepare_home(Path(tmp))
        asyncio.run(main(Path(tmp), target))
