"""Attestation statements: in-toto Statement v1 shape, predicate content, signed envelopes."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from securesystemslib.dsse import Envelope

# securesystemslib.signer re-exports these without __all__ (its typing is incomplete)
from securesystemslib.signer import SSlibKey  # type: ignore[attr-defined]

from bot.domain import (
    Approver,
    Event,
    Platform,
    PolicyRef,
    Request,
    Requirement,
    Status,
    Verdict,
    Vote,
    with_log_index,
)
from bot.errors import EvidenceError, RequestError
from bot.evidence import dsse
from bot.evidence.canonical import sha256_hex
from bot.evidence.keys import KeyRing
from bot.evidence.statement import (
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    attest,
    build_statement,
    parse_statement,
    rfc3339,
    subject_digest,
)
from tests import factories

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
ALICE = Approver(Platform.SLACK, "T0ACME", "U0ALICE", "Alice", via="chat_click", person="alice")
BOB = Approver(Platform.CONSOLE, "local", "bob", "Bob", via="console_login")


def make_request(status: Status = Status.PENDING, quorum: int = 2) -> Request:
    return factories.make_request(
        "req-1",
        arguments={"amount": 25000, "currency": "USD", "to": "acct-123"},
        justification="Refund for order 8812",
        context={"session_id": "s-1"},
        status=status,
        policy=PolicyRef("sha256:" + "d" * 64, "2026-11-21", "large-transfer"),
        requirement=Requirement(groups=("finance",), quorum=quorum),
        created_at=T0,
        artifact_digest="sha256:" + "a" * 64,
        deadline=T0 + timedelta(minutes=15),
    )


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing.create(tmp_path / "keys")


def test_statement_shape_for_a_quorum_vote() -> None:
    request = make_request()
    vote = Vote("req-1", ALICE, Verdict.APPROVE, "finance", "looks right", T0)
    st = build_statement(
        request,
        Event.APPROVED,
        at=T0 + timedelta(minutes=1),
        approver=ALICE,
        group="finance",
        reason="looks right",
        votes=[vote],
        prev_index=4,
    )
    assert st["_type"] == STATEMENT_TYPE
    assert st["predicateType"] == PREDICATE_TYPE
    assert st["subject"] == [
        {"name": "signoff-request:req-1", "digest": {"sha256": request.call_sha256}}
    ]
    p = st["predicate"]
    assert (p["decision"], p["stage"], p["final"], p["status"]) == (
        "approved",
        "vote",
        False,
        "pending",
    )
    assert p["approver"] == {
        "platform": "slack",
        "tenant": "T0ACME",
        "user_id": "U0ALICE",
        "display_name": "Alice",
        "group": "finance",
        "via": "chat_click",
        "person": "alice",
    }
    assert p["approvals"]["required"] == 2
    assert p["approvals"]["votes"][0]["approver"] == "slack:T0ACME:U0ALICE"
    assert p["approvals"]["votes"][0]["person"] == "alice"
    assert p["approvals"]["votes"][0]["verdict"] == "approve"
    assert p["request"] == {
        "id": "req-1",
        "tool": "payments.transfer",
        "arguments_sha256": request.arguments_sha256,
        "call_sha256": request.call_sha256,
        "tier": "confirm",
        "created_at": "2026-11-21T10:00:00Z",
        "deadline": "2026-11-21T10:15:00Z",
    }
    assert p["agent"] == {
        "id": "billing-agent",
        "artifact_digest": "sha256:" + "a" * 64,
        "claimed_artifact_digest": None,
    }
    assert p["policy"] == {
        "digest": "sha256:" + "d" * 64,
        "version": "2026-11-21",
        "rule": "large-transfer",
        "signer": None,  # the policy bundle was not signed (no policy.trusted_keys)
    }
    assert p["justification"] == "Refund for order 8812"
    assert p["context_sha256"] == sha256_hex(b'{"session_id":"s-1"}')
    assert p["reason"] == "looks right"
    assert p["timestamps"] == {"at": "2026-11-21T10:01:00Z", "decided_at": None}
    assert p["previous_log_index"] == 4
    assert "25000" not in json.dumps(st)  # arguments appear only as their digest


def test_final_decision_and_execution_stages() -> None:
    final = replace(make_request(Status.APPROVED), decided_at=T0 + timedelta(minutes=2))
    st = build_statement(final, Event.APPROVED, at=T0, approver=BOB, group="finance")
    assert (st["predicate"]["stage"], st["predicate"]["final"]) == ("decision", True)
    assert st["predicate"]["approver"]["via"] == "console_login"
    expired = build_statement(make_request(Status.EXPIRED), Event.EXPIRED, at=T0, reason="SLA")
    assert (expired["predicate"]["stage"], expired["predicate"]["final"]) == ("decision", True)
    assert expired["predicate"]["approver"] is None
    executed = build_statement(final, Event.EXECUTED, at=T0, detail={"rows": 3}, prev_index=9)
    assert executed["predicate"]["stage"] == "execution"
    assert executed["predicate"]["final"] is False
    assert executed["predicate"]["detail"] == {"rows": 3}


def test_rfc3339_is_utc_z() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2026, 1, 1, 12, tzinfo=plus_two)) == "2026-01-01T10:00:00Z"
    assert rfc3339(datetime(2026, 1, 1, 12, 0, 0, 5)) == "2026-01-01T12:00:00.000005Z"
    assert rfc3339(None) is None


def test_rfc3339_of_a_repeated_instant_is_the_same_text() -> None:
    # the last text is reused for an equal instant however it is written (naive, other zone)
    t = T0 + timedelta(microseconds=120)
    minus_five = timezone(timedelta(hours=-5))
    moments = [t, t, t.replace(tzinfo=None), t.astimezone(minus_five), t + timedelta(seconds=1)]
    moments += [T0, T0.replace(tzinfo=None), t]
    texts = [rfc3339(moment) for moment in moments]
    assert texts == [
        "2026-11-21T10:00:00.000120Z",
        "2026-11-21T10:00:00.000120Z",
        "2026-11-21T10:00:00.000120Z",
        "2026-11-21T10:00:00.000120Z",
        "2026-11-21T10:00:01.000120Z",
        "2026-11-21T10:00:00Z",
        "2026-11-21T10:00:00Z",
        "2026-11-21T10:00:00.000120Z",
    ]


def test_attest_produces_a_canonical_envelope_that_sslib_verifies(ring: KeyRing) -> None:
    request = make_request(Status.DENIED)
    data = attest(request, Event.DENIED, ring, at=T0, approver=ALICE, group="finance", reason="no")
    envelope = json.loads(data)
    assert dsse.encode(envelope) == data
    payload = dsse.verify_envelope(envelope, ring)
    statement = json.loads(payload)
    assert payload == rfc8785.dumps(statement)  # the signed payload is canonical JSON too
    assert statement == build_statement(
        request, Event.DENIED, at=T0, approver=ALICE, group="finance", reason="no"
    )
    key = SSlibKey(ring.kid, "ed25519", "ed25519", {"public": ring.current_public_key().hex()})
    Envelope.from_dict(envelope).verify([key], 1)
    assert parse_statement(payload) == statement
    assert subject_digest(statement) == request.call_sha256


def test_attest_with_float_detail_still_canonical(ring: KeyRing) -> None:
    request = make_request(Status.APPROVED)
    data = attest(request, Event.EXECUTED, ring, at=T0, detail={"ms": 1.5, "big": 1e21})
    payload = base64.b64decode(json.loads(data)["payload"])
    assert payload == rfc8785.dumps(json.loads(payload))
    assert b'"big":1e+21' in payload


def test_attest_refuses_detail_without_canonical_form(ring: KeyRing) -> None:
    with pytest.raises(RequestError):
        attest(make_request(), Event.EXECUTED, ring, at=T0, detail={"x": float("nan")})


def good_statement() -> dict[str, Any]:
    return build_statement(make_request(), Event.NOTIFIED, at=T0)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.update({"_type": "x"}), "in-toto"),
        (lambda s: s.update({"predicateType": "x"}), "predicateType"),
        (lambda s: s.update({"subject": []}), "subject"),
        (lambda s: s["predicate"].update({"previous_log_index": -1}), "previous_log_index"),
        (lambda s: s["predicate"].update({"previous_log_index": True}), "previous_log_index"),
        (lambda s: s["predicate"].update({"request": None}), "request id"),
        (lambda s: s["predicate"].pop("decision"), "decision"),
        (lambda s: s.update({"predicate": []}), "predicate"),
    ],
)
def test_parse_statement_refusals(mutate: Any, message: str) -> None:
    statement = good_statement()
    mutate(statement)
    with pytest.raises(EvidenceError, match=message):
        parse_statement(json.dumps(statement).encode())
    with pytest.raises(EvidenceError, match="JSON"):
        parse_statement(b"\xff")


def test_a_statement_two_parsers_could_read_differently_does_not_parse() -> None:
    text = json.dumps(good_statement())
    # a second "decision" (which parser's wins?), and a NaN the canonical form cannot hold
    twice = text.replace('"decision": "notified"', '"decision": "notified", "decision": "denied"')
    assert twice != text
    nan = text.replace('"previous_log_index": null', '"previous_log_index": NaN')
    assert nan != text
    for payload in (twice, nan):
        with pytest.raises(EvidenceError, match="not valid JSON"):
            parse_statement(payload.encode())
    assert parse_statement(text.encode()) == good_statement()


@pytest.mark.parametrize("status", list(Status))
def test_with_log_index_is_replace(status: Status) -> None:
    request = make_request(status)
    moved = with_log_index(request, 41)
    assert moved == replace(request, last_log_index=41)
    assert moved.last_log_index == 41 and request.last_log_index != 41
