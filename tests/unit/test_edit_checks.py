"""Checks on an approver's edit (bot.edits) and the quorum rule for edits (bot.approvals)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.approvals import current_approvals, quorum_met
from bot.domain import (
    Approver,
    Platform,
    PolicyRef,
    Request,
    Requirement,
    Verdict,
    Vote,
)
from bot.edits import EditNotAllowed, Proposal, check_edit, parse_proposal
from bot.errors import RequestError
from bot.evidence.canonical import call_digests
from tests.factories import make_request

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
ALICE = Approver(Platform.CONSOLE, "console", "alice", "Alice", via="console_login")
BOB = Approver(Platform.SLACK, "T1", "U0BOB", "Bob")
SCHEMA = {
    "type": "object",
    "properties": {"amount": {"type": "integer", "maximum": 50000}, "to": {"type": "string"}},
    "required": ["amount", "to"],
    "additionalProperties": False,
}


def request(editable: bool = True, context: dict[str, Any] | None = None) -> Request:
    return make_request(
        "r1",
        agent_id="agent",
        tool="payments.payout",
        arguments={"amount": 25000, "to": "acct-1"},
        context=context,
        policy=PolicyRef("sha256:x", None, "rule"),
        requirement=Requirement(groups=("finance",), quorum=2),
        created_at=NOW,
        editable=editable,
    )


def test_an_edit_binds_new_digests_and_names_the_editor() -> None:
    r = request()
    edit = check_edit(r, Proposal("payments.payout", {"amount": 100, "to": "acct-1"}), ALICE, NOW)
    a, c = call_digests("r1", "agent", "payments.payout", {"amount": 100, "to": "acct-1"})
    assert (edit.arguments_sha256, edit.call_sha256) == (a, c)
    assert (edit.by, edit.by_name) == (ALICE.key, "Alice")
    edited = replace(r, edit=edit)
    assert edited.current_sha256 == a and edited.current_call_sha256 == c
    assert edited.arguments_sha256 == r.arguments_sha256  # the agent's digest stays


def test_edits_are_refused_unless_the_rule_is_editable() -> None:
    with pytest.raises(EditNotAllowed):
        check_edit(request(editable=False), Proposal("payments.payout", {}), ALICE, NOW)


@pytest.mark.parametrize(
    ("proposal", "problem"),
    [
        (Proposal("payments.refund", {"amount": 1, "to": "x"}), "cannot change the tool"),
        (Proposal("payments.payout", [1]), "must be a JSON object"),
        (Proposal("payments.payout", {"blob": "x" * 300_000}), "at most 262,144"),
        (Proposal("payments.payout", {"amount": 10**6, "to": "x"}), "at /amount"),
        (Proposal("payments.payout", {"amount": 1}), "'to' is a required property"),
        (Proposal("payments.payout", {"amount": 1, "to": "x", "x": 1}), "Additional properties"),
    ],
)
def test_bad_edits_are_refused(proposal: Proposal, problem: str) -> None:
    with pytest.raises(RequestError, match=problem):
        check_edit(request(context={"arguments_schema": SCHEMA}), proposal, ALICE, NOW)


def test_a_broken_schema_refuses_every_edit() -> None:
    r = request(context={"arguments_schema": {"type": "no-such-type"}})
    with pytest.raises(RequestError, match="not a valid schema"):
        check_edit(r, Proposal("payments.payout", {"amount": 1, "to": "x"}), ALICE, NOW)


def test_parse_proposal_reads_a_call_or_bare_arguments() -> None:
    assert parse_proposal('{"amount": 1}', "t") == Proposal("t", {"amount": 1})
    assert parse_proposal('{"tool": "u", "arguments": {}}', "t") == Proposal("u", {})
    with pytest.raises(RequestError, match="not valid JSON"):
        parse_proposal('{"a": 1, "a": 2}', "t")


def test_an_edit_resets_approvals_of_the_earlier_version() -> None:
    r = request()
    old = Vote("r1", BOB, Verdict.APPROVE, "finance", "", NOW, r.arguments_sha256)
    edit = check_edit(r, Proposal("payments.payout", {"amount": 1, "to": "x"}), ALICE, NOW)
    edited = replace(r, edit=edit)
    mine = Vote("r1", ALICE, Verdict.APPROVE, "finance", "", NOW, edit.arguments_sha256)
    assert current_approvals(edited, [old, mine]) == [mine]
    assert not quorum_met(edited, [old, mine])  # quorum 2: bob must approve the edit too
    again = Vote("r1", BOB, Verdict.APPROVE, "finance", "", NOW, edit.arguments_sha256)
    assert quorum_met(edited, [old, mine, again])
    legacy = replace(old, arguments_sha256=None)  # votes from before edits existed
    assert current_approvals(r, [legacy]) == [legacy]
