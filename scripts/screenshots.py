"""Take the console screenshots for the docs: docs/console-inbox.png, docs/console-detail.png
and docs/console-report.png.

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


def prepare_home(home: Path) -> None:
    (home / "policies").mkdir()
    (home / "policies" / "example.yaml").write_text(example_policy(), encoding="utf-8")
    (home / "signoff.yaml").write_text(CONFIG_TEMPLATE, encoding="utf-8")
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
            for call in CALLS:
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
        await shoot(url, ids[0], out)
    finally:
        await runner.cleanup()
        await runtime.gate.drain()
        await runtime.store.close()


async def shoot(url: str, request_id: str, out: Path) -> None:
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
        await browser.close()
    for name in ("console-inbox.png", "console-detail.png", "console-report.png"):
        print(out / name)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs")
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepare_home(Path(tmp))
        asyncio.run(main(Path(tmp), target))
