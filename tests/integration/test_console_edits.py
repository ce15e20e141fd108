"""Edit before approving (rule option ``editable``, SPEC §5/§7) over real HTTP against a real
server on SQLite: the console form edits, the API answers ``approved_arguments``, the grant
binds them, the attestation records both digests and the editor, an edit needs the same
quorum (a second approver approves the edited version), and bad edits are refused."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from adapters.agent import AsyncSignoff
from adapters.agent.approval import AsyncApprovals
from bot.evidence.canonical import arguments_sha256, canonical
from bot.evidence.dsse import b64decode
from tests.integration.console_support import Server, fresh_session, running_server
from tests.integration.console_support import http_login as login

PAYOUT: dict[str, Any] = {
    "tool": "payments.payout",
    "arguments": {"amount": 25000, "currency": "USD", "to": "acct-123"},
    "justification": "Refund for order 8812",
    "context": {
        "arguments_schema": {
            "type": "object",
            "properties": {
                "amount": {"type": "integer", "minimum": 1, "maximum": 50000},
                "currency": {"enum": ["USD", "EUR"]},
                "to": {"type": "string"},
            },
            "required": ["amount", "currency", "to"],
            "additionalProperties": False,
        }
    },
}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SHA = re.compile(r'name="arguments_sha256" value="([0-9a-f]{64})"')


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path) as running:
        yield running


class Approver:
    def __init__(self, server: Server, http: aiohttp.ClientSession) -> None:
        self.server, self.http = server, http

    async def page(self, rid: str) -> str:
        async with self.http.get(f"{self.server.url}/console/requests/{rid}") as page:
            assert page.status == 200
            return await page.text()

    async def approve(self, rid: str, edited: Any = None, **form: str) -> tuple[int, str]:
        text = await self.page(rid)
        csrf, sha = CSRF.search(text), SHA.search(text)
        assert csrf is not None and sha is not None
        data = {"csrf_token": csrf.group(1), "arguments_sha256": sha.group(1), "reason": "ok"}
        if edited is not None:
            data["verdict"] = "approve_edited"
            data["edited"] = edited if isinstance(edited, str) else json.dumps(edited)
        else:
            data["verdict"] = "approve"
        data.update(form)
        async with self.http.post(
            f"{self.server.url}/console/requests/{rid}/decide", data=data, allow_redirects=False
        ) as resp:
            return resp.status, await resp.text()


@pytest_asyncio.fixture
async def alice(server: Server) -> AsyncIterator[Approver]:
    async with fresh_session() as http:
        assert (await login(http, server.url, "alice")).status == 303
        yield Approver(server, http)


@pytest_asyncio.fixture
async def dave(server: Server) -> AsyncIterator[Approver]:
    async with fresh_session() as http:
        assert (await login(http, server.url, "dave")).status == 303
        yield Approver(server, http)


async def predicates(server: Server, rid: str) -> list[dict[str, Any]]:
    entries = await server.runtime.store.log_entries_for(rid)
    out = []
    for entry in entries:
        envelope = json.loads(entry.envelope)
        out.append(json.loads(b64decode(envelope["payload"], "payload"))["predicate"])
    return out


def call(amount: int) -> dict[str, Any]:
    return {"tool": "payments.payout", "arguments": {**PAYOUT["arguments"], "amount": amount}}


async def test_an_edit_is_what_the_grant_binds_and_the_attestation_records(
    server: Server, alice: Approver
) -> None:
    rid = (await server.submit(PAYOUT))["id"]
    assert 'id="edited"' in await alice.page(rid)
    status, _ = await alice.approve(rid, call(1200))
    assert status == 303
    answer = await server.wait(rid)
    edited = {**PAYOUT["arguments"], "amount": 1200}
    assert answer["status"] == "approved"
    assert answer["approved_arguments"] == edited
    assert answer["approved_arguments_sha256"] == arguments_sha256(edited)
    assert answer["arguments_sha256"] == arguments_sha256(PAYOUT["arguments"])

    (approved,) = [p for p in await predicates(server, rid) if p["decision"] == "approved"]
    assert approved["request"]["arguments_sha256"] == answer["arguments_sha256"]
    assert approved["edit"]["arguments_sha256"] == arguments_sha256(edited)
    assert approved["edit"]["by"] == "console:alice"  # the person
    assert approved["approver"]["shown"] == "full"
    assert approved["approver"]["view"] == "console_page"

    # The grant binds the edited arguments: the original ones are refused, the edit runs.
    async with AsyncSignoff(server.url, server.token) as client:
        state = await client.get(rid)
        approvals = AsyncApprovals(client)
        ran: list[Any] = []

        async def run() -> str:
            ran.append("ran")
            return "ok"

        from adapters.agent.errors import GrantRefused

        with pytest.raises(GrantRefused):
            await approvals.run(state, "payments.payout", PAYOUT["arguments"], run)
        assert ran == []
        assert await approvals.run(state, "payments.payout", edited, run) == "ok"
        assert ran == ["ran"]


async def test_an_edit_needs_the_same_quorum_and_resets_earlier_approvals(
    server: Server, alice: Approver, dave: Approver
) -> None:
    body = {**PAYOUT, "tool": "payments.wire"}
    rid = (await server.submit(body))["id"]
    assert (await dave.approve(rid))[0] == 303  # dave approves the agent's version
    edit: dict[str, Any] = {
        "tool": "payments.wire",
        "arguments": {**PAYOUT["arguments"], "amount": 900},
    }
    assert (await alice.approve(rid, edit))[0] == 303  # alice edits: dave's approval resets
    pending = await server.wait(rid, 0)
    assert pending["status"] == "pending"
    assert pending["approvals"] == {"required": 2, "received": 1}
    assert pending["approved_arguments"] is None  # not approved yet

    page = await dave.page(rid)
    # dave sees the edited version
    assert "&#34;amount&#34;: 900" in page and 'id="edited-by"' in page
    assert (await dave.approve(rid))[0] == 303
    answer = await server.wait(rid)
    assert answer["status"] == "approved" and answer["approved_arguments"]["amount"] == 900
    votes = [p for p in await predicates(server, rid) if p["decision"] == "approved"]
    final = votes[-1]["approvals"]["votes"]
    edited_sha = arguments_sha256(edit["arguments"])
    assert [v["arguments_sha256"] for v in final] == [
        answer["arguments_sha256"],
        edited_sha,
        edited_sha,
    ]


@pytest.mark.parametrize(
    ("edited", "problem"),
    [
        ({"tool": "payments.refund", "arguments": PAYOUT["arguments"]}, "cannot change the tool"),
        (call(999_999), "breaks the tool&#39;s schema"),
        ({"tool": "payments.payout", "arguments": [1, 2]}, "must be a JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
async def test_bad_edits_are_refused_and_change_nothing(
    server: Server, alice: Approver, edited: Any, problem: str
) -> None:
    rid = (await server.submit(PAYOUT))["id"]
    status, text = await alice.approve(rid, edited)
    assert status == 400 and problem in text
    assert (await server.runtime.gate.get(rid)).edit is None
    assert await server.runtime.store.votes(rid) == []


async def test_an_edit_over_the_size_limit_is_refused(server: Server, alice: Approver) -> None:
    body = {**PAYOUT, "context": {}}
    rid = (await server.submit(body))["id"]
    big = {"tool": "payments.payout", "arguments": {"memo": "x" * 300_000}}
    assert len(canonical(big["arguments"])) > 300_000
    status, _ = await alice.approve(rid, big)
    # The console refuses the form before reading it (the size rule: test_edit_checks.py).
    assert status == 413
    assert (await server.runtime.gate.get(rid)).edit is None


async def test_a_rule_without_editable_refuses_edits(server: Server, alice: Approver) -> None:
    rid = (await server.submit({**PAYOUT, "tool": "payments.transfer"}))["id"]
    assert 'id="edited"' not in await alice.page(rid)
    status, text = await alice.approve(
        rid, {"tool": "payments.transfer", "arguments": PAYOUT["arguments"]}
    )
    assert status == 403 and "does not allow editing" in text


async def test_an_approval_of_a_version_no_longer_current_is_refused(
    server: Server, alice: Approver, dave: Approver
) -> None:
    rid = (await server.submit({**PAYOUT, "tool": "payments.wire"}))["id"]
    stale = SHA.search(await dave.page(rid))
    assert stale is not None
    edit = {"tool": "payments.wire", "arguments": {**PAYOUT["arguments"], "amount": 5}}
    assert (await alice.approve(rid, edit))[0] == 303
    status, text = await dave.approve(rid, arguments_sha256=stale.group(1))
    assert status == 409 and "changed since you reviewed" in text


async def test_a_step_up_rule_is_never_approved_without_a_security_key(
    server: Server, alice: Approver
) -> None:
    rid = (await server.submit({"tool": "db.drop", "arguments": {"table": "orders"}}))["id"]
    status, text = await alice.approve(rid)
    assert status == 403 and "needs your security key" in text
    assert (await server.runtime.gate.get(rid)).status.value == "pending"
    assert await server.runtime.store.votes(rid) == []
