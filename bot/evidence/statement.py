"""Attestations: in-toto Statement v1 for every state change, signed into a DSSE envelope.

Owns the predicate schema ``https://signoff.dev/attestation/decision/v1`` (SPEC §7)::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "signoff-request:<id>", "digest": {"sha256": <call_sha256>}}],
     "predicateType": "https://signoff.dev/attestation/decision/v1",
     "predicate": {
       "decision": "approved",          # bot.domain.Event value
       "stage": "vote",                 # vote | decision | execution
       "final": false,                  # did this change put the request in a final state
       "status": "pending",             # the request status after the change
       "request": {"id", "tool", "arguments_sha256", "call_sha256", "tier",
                   "created_at", "deadline"},
       "agent": {"id", "artifact_digest", "claimed_artifact_digest"},
       "policy": {"digest", "version", "rule", "signer"},   # signer: bundle key id or null
       "approver": {"platform", "tenant", "user_id", "display_name", "group", "via",
                    "person", "shown", "view"} | null,  # shown/view: what they saw (SPEC §8)
       "approvals": {"required": n, "votes": [{"approver", "platform", "tenant", "user_id",
                     "display_name", "group", "via", "person", "verdict", "reason", "at"}]},
       "edit": {"arguments_sha256", "call_sha256", "by", "by_name", "at"} | null,
       "reason", "justification", "context_sha256", "detail",
       "timestamps": {"at": <this change>, "decided_at": <request decided_at>},
       "previous_log_index": <int | null>}}

``approver.step_up`` (rules with ``step_up: webauthn``) is the approver's WebAuthn assertion:
``{"type": "webauthn", "credential_id", "public_key" (COSE, base64url), "rp_id", "origin",
"call_sha256", "nonce", "authenticator_data", "client_data_json", "signature"}`` (binary
values base64url); its challenge is SHA-256(call_sha256 bytes ‖ nonce), so the approval is
signed by the approver's own key for exactly this call.

``edit`` is set once an approver changed the arguments (rule option ``editable``): the
digests of the approved arguments and call, beside the agent's own in ``request``, and who
edited. Each vote records the ``arguments_sha256`` it approved.

``person`` is the policy person (SPEC §5) the platform identity resolved to (``alice``, or
``slack:U0X`` for an id no person claims); ``approver`` in a vote is the platform account
``<platform>:<tenant>:<user id>``. ``request`` passed in is the request *after* the change
it records. Times are RFC 3339 UTC with a ``Z``. Tool arguments never appear in the
statement, only their digest; ``detail`` (execution outcome details) is embedded as given.

Errors: ``RequestError`` when ``detail`` or the context have no canonical JSON form;
``EvidenceError`` from ``parse_statement`` for payloads that are not such a statement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from bot.domain import Approver, Event, Request, Review, Vote, rfc3339
from bot.errors import EvidenceError
from bot.evidence.canonical import canonical, canonical_plain, is_plain, sha256_hex
from bot.evidence.dsse import PAYLOAD_TYPE, sign_encoded
from bot.jsontext import decode_json
from bot.ports import Signer

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://signoff.dev/attestation/decision/v1"
SUBJECT_PREFIX = "signoff-request:"

_DECISIONS = frozenset(
    {
        Event.AUTO_ALLOWED,
        Event.NOTIFIED,
        Event.BLOCKED,
        Event.APPROVED,
        Event.DENIED,
        Event.EXPIRED,
        Event.CANCELLED,
    }
)


def _approver(approver: Approver, group: str | None) -> dict[str, Any]:
    return {
        "platform": approver.platform.value,
        "tenant": approver.tenant,
        "user_id": approver.user_id,
        "display_name": approver.display_name,
        "group": group,
        "via": approver.via,
        "person": approver.person or None,
    }


def _acting(
    approver: Approver,
    group: str | None,
    review: Review | None,
    step_up: Mapping[str, Any] | None,
) -> dict[str, Any]:
    entry = _approver(approver, group)
    if review is not None:
        entry["shown"] = review.shown.value
        entry["view"] = review.view
    if step_up is not None:
        entry["step_up"] = dict(step_up)
    return entry


def _vote(vote: Vote) -> dict[str, Any]:
    entry = _approver(vote.approver, vote.group)
    entry["approver"] = vote.approver.account
    entry["verdict"] = vote.verdict.value
    entry["reason"] = vote.reason
    entry["at"] = rfc3339(vote.at)
    if vote.arguments_sha256 is not None:
        entry["arguments_sha256"] = vote.arguments_sha256
    return entry


def _edit(request: Request) -> dict[str, Any] | None:
    edit = request.edit
    if edit is None:
        return None
    return {
        "arguments_sha256": edit.arguments_sha256,
        "call_sha256": edit.call_sha256,
        "by": edit.by,
        "by_name": edit.by_name,
        "at": rfc3339(edit.at),
    }


def build_statement(
    request: Request,
    event: Event,
    *,
    at: datetime,
    approver: Approver | None = None,
    group: str | None = None,
    reason: str | None = None,
    votes: Sequence[Vote] = (),
    detail: Mapping[str, Any] | None = None,
    prev_index: int | None = None,
    review: Review | None = None,
    step_up: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The in-toto Statement recording ``event`` on ``request`` (as it is after the change).

    ``approver``/``group`` name the human who acted and the group that authorised them;
    ``votes`` are all votes so far (quorum progress); ``prev_index`` is the log index of the
    request's previous attestation. ``reason`` defaults to ``request.reason``. ``review``
    records what ``approver`` was shown (``shown``/``view`` in the approver entry).
    """
    if type(event) is not Event:
        event = Event(event)
    decision = event in _DECISIONS
    if not decision:
        stage = "execution"
    elif approver is not None and not request.status.final:
        stage = "vote"
    else:
        stage = "decision"
    call = request.call
    context_sha256 = sha256_hex(canonical(dict(call.context))) if call.context else None
    policy = request.policy
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": SUBJECT_PREFIX + request.id, "digest": {"sha256": request.call_sha256}}
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "decision": str(event),
            "stage": stage,
            "final": decision and request.status.final,
            "status": str(request.status),
            "request": {
                "id": request.id,
                "tool": call.tool,
                "arguments_sha256": request.arguments_sha256,
                "call_sha256": request.call_sha256,
                "tier": str(request.tier),
                "created_at": rfc3339(request.created_at),
                "deadline": rfc3339(request.deadline),
            },
            "agent": {
                "id": request.agent_id,
                "artifact_digest": request.artifact_digest,
                "claimed_artifact_digest": request.claimed_artifact_digest,
            },
            "policy": {
                "digest": policy.digest,
                "version": policy.version,
                "rule": policy.rule,
                "signer": policy.signer,
            },
            "approver": (
                _acting(approver, group, review, step_up) if approver is not None else None
            ),
            "edit": _edit(request),
            "approvals": {
                "required": request.requirement.required,
                "votes": [_vote(vote) for vote in votes],
            },
            "reason": reason if reason is not None else request.reason,
            "justification": call.justification,
            "context_sha256": context_sha256,
            "detail": dict(detail) if detail is not None else None,
            "timestamps": {"at": rfc3339(at), "decided_at": rfc3339(request.decided_at)},
            "previous_log_index": prev_index,
        },
    }


def attest(
    request: Request,
    event: Event,
    signer: Signer,
    *,
    at: datetime,
    approver: Approver | None = None,
    group: str | None = None,
    reason: str | None = None,
    votes: Sequence[Vote] = (),
    detail: Mapping[str, Any] | None = None,
    prev_index: int | None = None,
    review: Review | None = None,
    step_up: Mapping[str, Any] | None = None,
) -> bytes:
    """``build_statement`` signed into a DSSE envelope; returns the canonical envelope bytes
    (what ``Store.commit`` appends to the log). Raises ``RequestError`` as ``build_statement``.
    """
    statement = build_statement(
        request,
        event,
        at=at,
        approver=approver,
        group=group,
        reason=reason,
        votes=votes,
        detail=detail,
        prev_index=prev_index,
        review=review,
        step_up=step_up,
    )
    # Every part of the statement but ``detail`` is built here from plain str/int/bool/None
    # values under ASCII literal keys, so only ``detail`` needs the RFC 8785 fast-path check.
    if (detail is None or is_plain(statement["predicate"]["detail"])) and step_up is None:
        payload = canonical_plain(statement)
    else:
        payload = canonical(statement)
    return sign_encoded(payload, PAYLOAD_TYPE, signer)


def parse_statement(payload: bytes) -> dict[str, Any]:
    """Parse and shape-check a signoff statement payload.

    Raises ``EvidenceError`` unless it is an in-toto Statement v1 with one subject carrying a
    sha256 digest and a signoff decision predicate with a well-typed ``previous_log_index``.
    """
    try:
        statement = decode_json(payload)  # strict: a duplicate key or NaN does not verify
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise EvidenceError("statement payload is not valid JSON") from None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise EvidenceError("payload is not an in-toto Statement v1")
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise EvidenceError(f"statement predicateType is not {PREDICATE_TYPE}")
    subject = statement.get("subject")
    try:
        digest = subject[0]["digest"]["sha256"]  # type: ignore[index]
    except (TypeError, KeyError, IndexError):
        digest = None
    if not isinstance(digest, str) or len(digest) != 64:
        raise EvidenceError("statement subject has no sha256 digest")
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict):
        raise EvidenceError("statement has no predicate object")
    prev = predicate.get("previous_log_index")
    if prev is not None and (type(prev) is not int or prev < 0):
        raise EvidenceError("statement previous_log_index is not a non-negative integer")
    request = predicate.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("id"), str):
        raise EvidenceError("statement predicate has no request id")
    if not isinstance(predicate.get("decision"), str):
        raise EvidenceError("statement predicate has no decision")
    return statement


def subject_digest(statement: Mapping[str, Any]) -> str:
    """The subject sha256 (the request's ``call_sha256``) of a parsed statement."""
    return str(statement["subject"][0]["digest"]["sha256"])


__all__ = [
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "SUBJECT_PREFIX",
    "attest",
    "build_statement",
    "parse_statement",
    "rfc3339",
    "subject_digest",
]
