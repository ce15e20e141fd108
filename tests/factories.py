"""Builders for the domain values tests construct again and again: a ``Request`` with
sensible defaults, a compare-and-set ``Change`` of one, a stand-in log envelope.

Every field is an override, so tests that feed golden files pass exactly the values the
golden was made from. The digests default to the real ones of the call (what the gate
would compute), so evidence checks pass unless a test sets them on purpose.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TypedDict, Unpack

from bot.domain import (
    JSON,
    Change,
    Edit,
    EscalationStep,
    Outcome,
    PolicyRef,
    Request,
    Requirement,
    Status,
    Tier,
    ToolCall,
)
from bot.evidence.canonical import call_digests

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
ARGUMENTS: Mapping[str, JSON] = {"amount": 25000, "to": "acct-123"}
POLICY = PolicyRef("sha256:" + "d" * 64, "v1", "large-transfer")
FINANCE = Requirement(groups=("finance",))
#: the store tests' epoch: microseconds set, to catch a column that truncates them
STORE_T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


class RequestFields(TypedDict, total=False):
    """The ``Request`` fields with a default in the dataclass itself."""

    artifact_digest: str | None
    claimed_artifact_digest: str | None
    escalation: tuple[EscalationStep, ...]
    deadline: datetime | None
    decided_at: datetime | None
    reason: str | None
    callback_url: str | None
    idempotency_key: str | None
    body_sha256: str | None
    extra_groups: tuple[str, ...]
    steps_done: int
    grant: str | None
    grant_expires_at: datetime | None
    grant_used_at: datetime | None
    outcome: Outcome | None
    last_log_index: int | None
    version: int
    session: str | None
    labels: tuple[str, ...]
    editable: bool
    step_up: str | None
    edit: Edit | None


class Changes(RequestFields, total=False):
    """Any ``Request`` field but its id: what a transition may change."""

    agent_id: str
    call: ToolCall
    tier: Tier
    status: Status
    policy: PolicyRef
    requirement: Requirement
    created_at: datetime
    arguments_sha256: str
    call_sha256: str


def make_request(
    id: str = "req-1",
    *,
    agent_id: str = "billing-agent",
    tool: str = "payments.transfer",
    arguments: Mapping[str, JSON] = ARGUMENTS,
    justification: str = "",
    context: Mapping[str, JSON] | None = None,
    call: ToolCall | None = None,
    tier: Tier = Tier.CONFIRM,
    status: Status = Status.PENDING,
    policy: PolicyRef = POLICY,
    requirement: Requirement = FINANCE,
    created_at: datetime = T0,
    arguments_sha256: str | None = None,
    call_sha256: str | None = None,
    **fields: Unpack[RequestFields],
) -> Request:
    """A request as the gate would build it. ``call`` (if given) wins over ``tool``,
    ``arguments``, ``justification`` and ``context``; digests left out are computed."""
    if call is None:
        call = ToolCall(tool, arguments, justification, dict(context or {}))
    digests = ("", "")
    if arguments_sha256 is None or call_sha256 is None:
        digests = call_digests(id, agent_id, call.tool, call.arguments)
    return Request(
        id=id,
        agent_id=agent_id,
        call=call,
        tier=tier,
        status=status,
        policy=policy,
        requirement=requirement,
        created_at=created_at,
        arguments_sha256=digests[0] if arguments_sha256 is None else arguments_sha256,
        call_sha256=digests[1] if call_sha256 is None else call_sha256,
        **fields,
    )


def numbered_request(
    number: int = 1,
    *,
    agent_id: str = "agent-1",
    status: Status = Status.PENDING,
    requirement: Requirement = FINANCE,
    **fields: Unpack[RequestFields],
) -> Request:
    """``req-<number>``, created ``number`` seconds after ``STORE_T0``, with fixed digests:
    what the store tests insert by the hundred (no hashing per row)."""
    return make_request(
        f"req-{number}",
        agent_id=agent_id,
        arguments={"amount": number},
        status=status,
        policy=PolicyRef("sha256:abc", "v1", "payments"),
        requirement=requirement,
        created_at=STORE_T0 + timedelta(seconds=number),
        arguments_sha256="a" * 64,
        call_sha256="c" * 64,
        **fields,
    )


def changed(request: Request, **fields: Unpack[Changes]) -> Request:
    """``request`` with some of its defaulted fields replaced (typed, unlike ``replace``)."""
    return dataclasses.replace(request, **fields)


def advance(request: Request, **fields: Unpack[Changes]) -> Change:
    """The compare-and-set change from ``request`` to its next version with ``fields``."""
    after = dataclasses.replace(request, **fields)
    return Change(before=request, after=dataclasses.replace(after, version=request.version + 1))


def envelope(n: int) -> bytes:
    """A stand-in for a DSSE envelope where only the log's bytes matter."""
    return f'{{"n":{n}}}'.encode()


def widest_request(request_id: str = "req-full", at: datetime = STORE_T0) -> Request:
    """A request with every optional column set, the JSON and time ones included: what the
    tests of the raw statements compare with Core's rows."""
    return make_request(
        request_id,
        context={"ticket": "T-1", "nested": [1, {"a": None}]},
        escalation=(EscalationStep(timedelta(minutes=5), remind=True, to="#ops"),),
        deadline=at + timedelta(minutes=15),
        decided_at=at,
        grant="g.r.ant",
        grant_expires_at=at + timedelta(minutes=5),
        extra_groups=("leads",),
        labels=("pii", "money"),
        editable=True,
        step_up="webauthn",
        edit=Edit({"amount": 1}, "a" * 64, "c" * 64, "console:alice", "Alice", at),
        session="s-1",
        last_log_index=7,
    )
