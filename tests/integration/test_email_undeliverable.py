"""An approval email that no member of a group could be sent escalates sooner (SPEC §8),
through the composition root's wiring, against a real SMTP server that refuses the group's
addresses; it never allows anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_aiohttp import AiohttpClient

from adapters.main import build
from bench.fakes.smtp_server import Inbox, SmtpServer
from bot.domain import Event, Status
from bot.settings import load_settings
from tests.support import write_home

POLICY = """\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {name: email-early, version: "e1"}
people:
  alice: {email: alice@example.com}
  bob: {email: bob@example.com}
  carol: {email: carol@example.com}
groups:
  finance:
    members: [alice, bob]
    email: {}
  leads:
    members: [carol]
    email: {}
defaults: {unknown_tool: block}
rules:
  - name: large-transfer
    tool: payments.transfer
    tier: confirm
    approvers: {groups: [finance]}
    sla: 30m
    escalation:
      - {after: 10m, to: leads}
      - {after: 30m, action: deny}
"""
REFUSED = {"alice@example.com", "bob@example.com"}


class RefusingInbox(Inbox):
    """Refuses the finance members' addresses at RCPT (mailbox unavailable)."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.casefold() in REFUSED:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"


async def test_undeliverable_email_brings_the_next_step_forward(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    smtp = SmtpServer()
    smtp.inbox = RefusingInbox()
    smtp.controller.handler = smtp.inbox
    smtp.start()
    try:
        extra = f'email: {{smtp_url: "{smtp.url}", from: signoff@example.com}}\n'
        runtime = await build(load_settings(write_home(tmp_path, policy=POLICY, extra=extra)))
        http = await aiohttp_client(runtime.app)
        _, token = await runtime.gate.register_agent("billing-agent")
        try:
            resp = await http.post(
                "/v1/requests",
                json={"tool": "payments.transfer", "arguments": {"amount": 25000}},
                headers={"Authorization": f"Bearer {token}"},
            )
            rid = (await resp.json())["id"]
            # the group the early step adds gets its message (the step committed before it)
            (message,) = await smtp.inbox.wait_for(1)
            assert message["To"] == "carol@example.com"
            await runtime.gate.drain()
            request = await runtime.gate.get(rid)
            assert request.status is Status.PENDING  # never allowed by a failure
            assert request.steps_done == 1 and request.extra_groups == ("leads",)
            events = [e.event for e in await runtime.gate.log_entries_for(rid)]
            assert events == [Event.ESCALATED]
        finally:
            await runtime.gate.drain()
            await runtime.store.close()
    finally:
        smtp.stop()
