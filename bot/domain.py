"""Domain values of signoff: frozen dataclasses and enums, standard library only.

Times are timezone-aware UTC ``datetime``s. JSON values (arguments, context, details) are
plain ``dict``/``list``/``str``/``int``/``float``/``bool``/``None`` trees; they are never
mutated after construction.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, overload

JSON = Any
"""A JSON value as parsed by ``json.loads`` (the type system cannot say more usefully)."""


# The enums below are StrEnums: ``str(member)`` is the member's value as a plain ``str`` (one
# C call; ``.value`` goes through a Python descriptor), which the per-request paths use.


class Tier(enum.StrEnum):
    AUTO = "auto"
    NOTIFY = "notify"
    CONFIRM = "confirm"
    BLOCK = "block"


class Status(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self is not Status.PENDING


class Verdict(enum.StrEnum):
    APPROVE = "approve"
    DENY = "deny"


class Outcome(enum.StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Event(enum.StrEnum):
    """What an attestation records (SPEC §7 ``decision``; ``execution_started`` and
    ``escalated`` are extensions)."""

    AUTO_ALLOWED = "auto_allowed"
    NOTIFIED = "notified"
    BLOCKED = "blocked"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    EXECUTION_STARTED = "execution_started"
    EXECUTED = "executed"
    EXECUTION_FAILED = "execution_failed"
    ESCALATED = "escalated"  # an escalation step ran (remind / to a group / page)


class Shown(enum.StrEnum):
    """How much of the arguments an approver was shown when they decided (SPEC §8 "What the
    approver saw"): an approval needs ``full``."""

    FULL = "full"
    PREVIEW = "preview"


@dataclass(frozen=True, slots=True)
class Review:
    """What an approver saw when deciding: ``shown`` (full or a cut preview), ``view``, the
    surface that showed it (``card``, ``review_modal``, ``review_card``, ``console_page``,
    ``email_page``), and, when the surface knows it, the ``arguments_sha256`` it showed (an
    approval of arguments that changed since is refused). Recorded in the vote's attestation."""

    shown: Shown
    view: str
    arguments_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Edit:
    """Arguments an approver changed before approving (rule option ``editable``, SPEC §5):
    the grant binds these. ``by`` is the editor's approver key, ``by_name`` their name."""

    arguments: Mapping[str, JSON]
    arguments_sha256: str
    call_sha256: str
    by: str
    by_name: str
    at: datetime


class Platform(enum.StrEnum):
    SLACK = "slack"
    TEAMS = "teams"
    CONSOLE = "console"
    EMAIL = "email"


@dataclass(frozen=True, slots=True)
class Agent:
    """A registered non-human identity. ``token_hash`` is the SHA-256 hex of its bearer token."""

    id: str
    token_hash: str
    created_at: datetime
    artifact_digest: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    suspended: bool = False
    #: what a request said it runs when that differs from ``artifact_digest`` (a claim,
    #: never verified; set only on the per-request view policy evaluates)
    claimed_artifact_digest: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    tool: str
    arguments: Mapping[str, JSON]
    justification: str = ""
    context: Mapping[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Approver:
    """A human acting on a request, identified by an immutable platform id.

    ``person`` is the policy person (SPEC §5) the gate resolved the account to: a ``people:``
    key such as ``alice``, or ``<platform>:<id>`` for an id no person claims; empty until the
    gate resolved it. ``key`` identifies the human for quorum counting and duplicate-vote
    checks: the person when known, else the account. ``via`` says how they acted:
    ``chat_click`` or ``console_login``.
    """

    platform: Platform
    tenant: str
    user_id: str
    display_name: str = ""
    email: str | None = None
    via: str = "chat_click"
    person: str = ""

    @property
    def account(self) -> str:
        """The platform account: ``<platform>:<workspace or tenant>:<user id>``."""
        return f"{self.platform.value}:{self.tenant}:{self.user_id}"

    @property
    def key(self) -> str:
        return self.person or self.account


@dataclass(frozen=True, slots=True)
class Requirement:
    """Who must approve: ``quorum`` distinct humans from any of ``groups``, and/or one
    approval from each group of ``all_of``."""

    groups: tuple[str, ...] = ()
    quorum: int = 1
    all_of: tuple[str, ...] = ()

    @property
    def required(self) -> int:
        return max(self.quorum if self.groups else 0, 0) + len(self.all_of)

    @property
    def all_groups(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.groups, *self.all_of)))


@dataclass(frozen=True, slots=True)
class EscalationStep:
    """One step of a rule's escalation ladder, ``after`` the request was created."""

    after: timedelta
    remind: bool = False
    to: str | None = None
    page: bool = False
    deny: bool = False


@dataclass(frozen=True, slots=True)
class PolicyRef:
    digest: str
    version: str | None
    rule: str | None
    #: key id that signed the policy bundle (``policy.trusted_keys`` set), else None
    signer: str | None = None


@dataclass(frozen=True, slots=True)
class Vote:
    """One human's verdict on a request (a quorum may need several)."""

    request_id: str
    approver: Approver
    verdict: Verdict
    group: str
    reason: str
    at: datetime
    arguments_sha256: str | None = None
    """The version of the arguments approved (None: the agent's original, for votes recorded
    before edits existed). Only approvals of the current version count toward quorum."""


@dataclass(frozen=True, slots=True)
class Request:
    """One evaluated tool call and everything decided about it.

    ``version`` increments on every committed change; stores compare-and-set on it.
    ``artifact_digest`` is the agent's registered digest; ``claimed_artifact_digest`` is a
    differing one the request body claimed (shown separately, never in its place).
    ``steps_done`` counts escalation steps already run. ``extra_groups`` holds groups added
    by escalation (``to:``), who become approvers in addition to the rule's groups.
    """

    id: str
    agent_id: str
    call: ToolCall
    tier: Tier
    status: Status
    policy: PolicyRef
    requirement: Requirement
    created_at: datetime
    arguments_sha256: str
    call_sha256: str
    artifact_digest: str | None = None
    claimed_artifact_digest: str | None = None
    escalation: tuple[EscalationStep, ...] = ()
    deadline: datetime | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    callback_url: str | None = None
    idempotency_key: str | None = None
    body_sha256: str | None = None
    extra_groups: tuple[str, ...] = ()
    steps_done: int = 0
    grant: str | None = None
    grant_expires_at: datetime | None = None
    grant_used_at: datetime | None = None
    outcome: Outcome | None = None
    last_log_index: int | None = None
    version: int = 0
    #: the session key the call gave (``sessions.key``) and the labels the policy put on it
    session: str | None = None
    labels: tuple[str, ...] = ()
    editable: bool = False
    step_up: str | None = None
    edit: Edit | None = None

    @property
    def current_arguments(self) -> Mapping[str, JSON]:
        """The arguments up for approval: an approver's edit, else the agent's."""
        return self.edit.arguments if self.edit is not None else self.call.arguments

    @property
    def current_sha256(self) -> str:
        """``arguments_sha256`` of ``current_arguments``."""
        return self.edit.arguments_sha256 if self.edit is not None else self.arguments_sha256

    @property
    def current_call_sha256(self) -> str:
        """``call_sha256`` of the call with ``current_arguments`` (what a grant binds)."""
        return self.edit.call_sha256 if self.edit is not None else self.call_sha256

    @property
    def approver_groups(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.requirement.all_groups, *self.extra_groups)))


@dataclass(frozen=True, slots=True)
class PendingTimer:
    """What the escalation scheduler needs of one pending request (``Store.pending_timers``):
    enough to say when its next step falls due."""

    id: str
    created_at: datetime
    deadline: datetime | None
    escalation: tuple[EscalationStep, ...]
    steps_done: int


class Delivery(enum.StrEnum):
    """What a commit can owe beyond itself, recorded in the same transaction (``Store``
    ``deliveries_due``), so that a process stopping before it is done loses nothing."""

    CALLBACK = "callback"  # the final state, to the request's callback_url
    CARDS = "cards"  # a new confirm or notify request, to the approval channels


#: how long the process that commits a delivery owed holds it before any process may take it
#: over (it delivers at once; a callback's holder extends the hold before each retry)
DELIVERY_HOLD = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class OwedDelivery:
    """A delivery still owed (``Store.deliveries_due``): ``attempts`` made so far;
    ``version`` is the token the next take or hold must name (compare-and-set)."""

    request_id: str
    kind: Delivery
    attempts: int
    version: int


@dataclass(frozen=True, slots=True)
class SessionCalls:
    """Earlier calls of one session that carry the same labels, summarised by the store:
    how many, the first and the latest (request ids are UUIDv7: ordered by their
    millisecond; two calls in the same millisecond may be taken in either order)."""

    labels: tuple[str, ...]
    count: int
    first_request: str
    last_request: str
    last_at: datetime


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One attestation in the Merkle log: its index, envelope JSON bytes and leaf hash."""

    index: int
    request_id: str | None
    envelope: bytes
    leaf_hash: bytes
    event: Event
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head: the C2SP signed-note text for ``size`` and ``root``."""

    size: int
    root: bytes
    note: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Post:
    """Where a card for a request was posted, so every copy can be updated later."""

    request_id: str
    platform: Platform
    group: str
    channel: str
    message_id: str
    thread_id: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Change:
    """A compare-and-set transition of one request, committed atomically with its evidence.

    ``before.version`` must still be current; ``after.version`` is ``before.version + 1``.
    ``vote`` (if any) is unique per (request, approver key). ``attestation`` (if any) is the
    DSSE envelope JSON appended to the log in the same transaction.
    """

    before: Request
    after: Request
    vote: Vote | None = None
    attestation: bytes | None = None
    event: Event | None = None


def utc(dt: datetime) -> datetime:
    """Return ``dt`` as aware UTC (naive values are taken to be UTC)."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


_REQUEST_FIELDS = tuple(f.name for f in fields(Request))
if not all(f.init and not f.kw_only for f in fields(Request)):
    raise TypeError("with_log_index passes every field of Request by position")
_request_values = operator.attrgetter(*_REQUEST_FIELDS)
_LOG_INDEX = _REQUEST_FIELDS.index("last_log_index")


def owes_cards(request: Request) -> bool:
    """Whether a new request is announced to its approvers (cards, email): confirm and notify
    tiers."""
    return request.tier is Tier.CONFIRM or request.tier is Tier.NOTIFY


def with_log_index(request: Request, index: int) -> Request:
    """``dataclasses.replace(request, last_log_index=index)`` at half the cost (the fields
    read by one C call and passed by position): every stored submission pays for it."""
    values = list(_request_values(request))
    values[_LOG_INDEX] = index
    return Request(*values)


@overload
def rfc3339(moment: datetime) -> str: ...
@overload
def rfc3339(moment: None) -> None: ...
@overload
def rfc3339(moment: datetime | None) -> str | None: ...
def rfc3339(moment: datetime | None) -> str | None:
    """RFC 3339 UTC with ``Z`` (naive values are taken as UTC): the one text form of a time
    in attestations, API answers and key files."""
    global _last_rfc3339
    if moment is None:
        return None
    if moment.tzinfo is not UTC:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    last = _last_rfc3339
    if moment == last[0]:  # both UTC: equal instants have equal fields, so equal text
        return last[1]
    text = moment.isoformat()[:-6] + "Z"  # drop "+00:00"
    _last_rfc3339 = (moment, text)
    return text


# The last time formatted and its text: a request formats the same few instants ~10 times
# (created, updated, decided, the attestations' times). One tuple, swapped whole, so threads
# sharing it see a matching pair.
_last_rfc3339: tuple[datetime, str] = (datetime.min.replace(tzinfo=UTC), "0001-01-01T00:00:00Z")


__all__ = [
    "DELIVERY_HOLD",
    "JSON",
    "Agent",
    "Approver",
    "Change",
    "Checkpoint",
    "Delivery",
    "Edit",
    "EscalationStep",
    "Event",
    "LogEntry",
    "Outcome",
    "OwedDelivery",
    "PendingTimer",
    "Platform",
    "PolicyRef",
    "Post",
    "Request",
    "Requirement",
    "Review",
    "SessionCalls",
    "Shown",
    "Status",
    "Tier",
    "ToolCall",
    "Verdict",
    "Vote",
    "owes_cards",
    "rfc3339",
    "utc",
    "with_log_index",
]
