"""The email channel end to end (SPEC §8 Email, issue 17): a confirm request sends each
member of an ``email: {}`` group a message over SMTP (a real ``aiosmtpd`` server started by
the test) with signed links; opening a link decides nothing; the confirm form decides under
every rule of the other channels; forged, tampered, reused, expired and other people's links
are refused; reminders go by email too."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest_asyncio
from pytest_aiohttp import AiohttpClient

from adapters.email.links import Link, make_link
from adapters.main import build
from adapters.runtime import Runtime
from bench.fakes.smtp_server import SmtpServer, html_of, text_of
from bot.domain import Status, Verdict
from bot.evidence.dsse import b64decode
from bot.ports import Notice, NoticeKind
from bot.settings import load_settings
from tests.support import AppClient, write_home

POLICY = """\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {name: email-test, version: "e1"}
people:
  alice: {email: alice@example.com, name: Alice}
  bob: {email: Bob@Example.com, name: Bob}
  carol: {email: carol@example.com}
groups:
  finance:
    members: [alice, bob]
    email: {}
  leads:
    members: [carol]
    email: {}
defaults:
  unknown_tool: confirm
  sla: 15m
  approvers: {groups: [leads]}
rules:
  - name: large-transfer
    tool: payments.transfer
    tier: confirm
    approvers: {groups: [finance]}
  - name: dual-wire
    tool: payments.wire
    tier: confirm
    approvers: {groups: [finance], quorum: 2}
  - name: keyed-drop
    tool: db.drop
    tier: confirm
    step_up: webauthn
    approvers: {groups: [finance]}
"""
LINK = re.compile(r"(http://127\.0\.0\.1:8080/email/decide\?t=[A-Za-z0-9_\-.]+)")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Env:
    runtime: Runtime
    http: AppClient
    smtp: SmtpServer
    token: str

    async def submit(self, tool: str = "payments.transfer", **body: Any) -> dict[str, Any]:
        payload = {"tool": tool, "arguments": {"amount": 25000, "to": "<b>acct</b>"}, **body}
        resp = await self.http.post(
            "/v1/requests", json=payload, headers={"Authorization": f"Bearer {self.token}"}
        )
        assert resp.status == 201, await resp.text()
        result: dict[str, Any] = await resp.json()
        return result

    async def links(self, count: int) -> dict[tuple[str, str], str]:
        """(recipient, verdict) -> link path, from the first ``count`` messages."""
        await self.runtime.gate.drain()
        messages = await self.smtp.inbox.wait_for(count)
        found: dict[tuple[str, str], str] = {}
        for message in messages[:count]:
            approve, deny = LINK.findall(text_of(message))[:2]
            found[(str(message["To"]).lower(), "approve")] = path(approve)
            found[(str(message["To"]).lower(), "deny")] = path(deny)
        return found

    async def open(self, link: str) -> tuple[int, str]:
        resp = await self.http.get(link)
        return resp.status, await resp.text()

    async def confirm(
        self, link: str, reason: str = "", *, csrf: str | None = None
    ) -> tuple[int, str]:
        status, page = await self.open(link)
        assert status == 200, page
        match = CSRF.search(page)
        assert match is not None
        token = link.split("t=", 1)[1]
        data = {"t": token, "csrf": csrf if csrf is not None else match.group(1), "reason": reason}
        resp = await self.http.post("/email/decide", data=data)
        return resp.status, await resp.text()

    async def post(self, link: str, csrf: str, reason: str = "") -> tuple[int, str]:
        data = {"t": link.split("t=", 1)[1], "csrf": csrf, "reason": reason}
        resp = await self.http.post("/email/decide", data=data)
        return resp.status, await resp.text()

    def csrf_cookie(self) -> str:
        for cookie in self.http.session.cookie_jar:
            if cookie.key == "signoff_email_csrf":
                return cookie.value
        raise AssertionError("no CSRF cookie was set")

    async def state(self, rid: str) -> Status:
        return (await self.runtime.gate.get(rid)).status


def path(url: str) -> str:
    return url.removeprefix("http://127.0.0.1:8080")


@pytest_asyncio.fixture
async def env(tmp_path: Path, aiohttp_client: AiohttpClient) -> AsyncIterator[Env]:
    smtp = SmtpServer()
    smtp.start()
    extra = f'email: {{smtp_url: "{smtp.url}", from: signoff@example.com}}\n'
    runtime = await build(load_settings(write_home(tmp_path, policy=POLICY, extra=extra)))
    http = await aiohttp_client(runtime.app)
    _, token = await runtime.gate.register_agent("billing-agent")
    try:
        yield Env(runtime, http, smtp, token)
    finally:
        await runtime.gate.drain()
        await runtime.store.close()
        smtp.stop()


async def test_an_approver_decides_by_email_link(env: Env) -> None:
    created = await env.submit(justification="<script>alert(1)</script>")
    rid = created["id"]
    links = await env.links(2)
    assert {to for to, _ in links} == {"alice@example.com", "bob@example.com"}
    message = env.smtp.inbox.messages[0]
    assert message["From"] == "signoff@example.com" and "payments.transfer" in message["Subject"]
    html = html_of(message)
    assert "&lt;script&gt;" in html and "<script>" not in html  # agent text escaped
    assert created["arguments_sha256"] in html and created["arguments_sha256"] in text_of(message)

    approve = links[("alice@example.com", "approve")]
    for _ in range(3):  # a link scanner prefetching the link decides nothing
        status, page = await env.open(approve)
        assert status == 200 and "&lt;b&gt;acct&lt;/b&gt;" in page
    assert await env.state(rid) is Status.PENDING

    status, page = await env.confirm(approve, "ok by me")
    assert status == 200 and 'id="done"' in page
    assert await env.state(rid) is Status.APPROVED
    entries = await env.runtime.store.log_entries_for(rid)
    statement = json.loads(b64decode(json.loads(entries[-1].envelope)["payload"], "payload"))
    approver = statement["predicate"]["approver"]
    assert (approver["platform"], approver["via"], approver["person"]) == (
        "email",
        "email_link",
        "alice",
    )
    assert (approver["shown"], approver["view"]) == ("full", "email_page")

    # Reused: the request is decided, so the link shows no form and a replayed POST of the
    # confirm form decides nothing.
    status, page = await env.open(approve)
    assert status == 200 and "already approved" in page and 'id="confirm"' not in page
    status, page = await env.post(approve, env.csrf_cookie())
    assert status == 409 and "already approved" in page


async def test_quorum_counts_people_across_links_and_deny_needs_a_reason(env: Env) -> None:
    rid = (await env.submit("payments.wire"))["id"]
    links = await env.links(2)
    assert (await env.confirm(links[("alice@example.com", "approve")]))[0] == 200
    assert await env.state(rid) is Status.PENDING
    status, page = await env.confirm(links[("alice@example.com", "approve")])
    assert status == 409 and "already voted" in page  # one person, one vote
    status, page = await env.confirm(links[("bob@example.com", "deny")], "")
    assert status == 400 and "reason is required" in page
    assert (await env.confirm(links[("bob@example.com", "approve")]))[0] == 200
    assert await env.state(rid) is Status.APPROVED


async def test_forged_tampered_expired_and_other_peoples_links_are_refused(env: Env) -> None:
    created = await env.submit(context={"requested_by": "bob@example.com"})
    rid = created["id"]
    links = await env.links(2)
    approve = links[("alice@example.com", "approve")]
    token = approve.split("t=", 1)[1]
    head, sig = token.split(".")
    forged = f"/email/decide?t={head}.{sig[:-4]}AAAA"
    status, page = await env.open(forged)
    assert status == 403 and "does not verify" in page
    tampered = json.dumps({"r": rid, "p": "carol", "v": "approve"})
    status, page = await env.open(f"/email/decide?t={tampered}.{sig}")
    assert status == 403

    keys = env.runtime.gate.keys
    request = await env.runtime.gate.get(rid)
    now = int(env.runtime.gate.clock.now().timestamp())
    expired = make_link(
        Link(rid, "alice", "alice@example.com", Verdict.APPROVE, request.current_sha256, now - 1),
        keys,
    )
    status, page = await env.open(f"/email/decide?t={expired}")
    assert status == 403 and "expired" in page

    # A signed link for someone outside the request's groups (carol leads, not finance).
    deadline = int((env.runtime.gate.clock.now() + timedelta(minutes=5)).timestamp())
    carol = make_link(
        Link(rid, "carol", "carol@example.com", Verdict.APPROVE, request.current_sha256, deadline),
        keys,
    )
    status, page = await env.confirm(f"/email/decide?t={carol}")
    assert status == 403 and "not an approver" in page
    # A link for alice's person at another address (the policy no longer lists it).
    moved = make_link(
        Link(
            rid, "alice", "mallory@example.com", Verdict.APPROVE, request.current_sha256, deadline
        ),
        keys,
    )
    status, page = await env.confirm(f"/email/decide?t={moved}")
    assert status == 403 and "no longer has this address" in page
    # The requester (bob) cannot approve their own request by email either.
    status, page = await env.confirm(links[("bob@example.com", "approve")])
    assert status == 403 and "requested this call" in page
    # A POST without the page's CSRF cookie value is refused.
    status, page = await env.confirm(approve, csrf="x" * 43)
    assert status == 403 and "not sent from its own page" in page
    assert await env.state(rid) is Status.PENDING
    assert await env.runtime.store.votes(rid) == []


async def test_reminders_go_by_email_and_step_up_rules_link_to_the_console(env: Env) -> None:
    rid = (await env.submit())["id"]
    await env.links(2)
    request = await env.runtime.gate.get(rid)
    env.runtime.gate.publish(Notice(NoticeKind.REMINDER, request, groups=("finance",)))
    await env.runtime.gate.drain()
    reminders = (await env.smtp.inbox.wait_for(4))[2:]
    assert all("Reminder" in str(m["Subject"]) for m in reminders)
    assert all(LINK.search(text_of(m)) for m in reminders)

    keyed = (await env.submit("db.drop", arguments={"table": "orders"}))["id"]
    (message,) = (await env.smtp.inbox.wait_for(6))[4:5]
    text = text_of(message)
    assert not LINK.search(text) and f"/console/requests/{keyed}" in text
    await asyncio.sleep(0)
