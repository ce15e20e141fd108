"""Ports: the roles the core depends on, as ``typing.Protocol``s.

Implementations are named by technology (``SqlStore``, ``SlackChannel``, ``TeamsChannel``,
``PagerDutyPager``); test doubles are ``Fake…``. This module imports only the domain and the errors.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from bot.domain import (
    Agent,
    Change,
    Checkpoint,
    Delivery,
    Event,
    LogEntry,
    OwedDelivery,
    PendingTimer,
    Platform,
    Post,
    Request,
    SessionCalls,
    Status,
    Vote,
)
from bot.errors import ChannelError


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC now."""
        ...


class Store(Protocol):
    """Persistence of agents, requests, votes, posts, rate counters and the Merkle log.

    Every method raises ``StoreError`` when the database is unreachable. State changes are
    compare-and-set on ``Request.version`` and commit their attestation in the same
    transaction, appended to the log under a lock that serialises appends across processes.
    """

    async def ping(self) -> None: ...
    async def close(self) -> None: ...

    # agents
    async def add_agent(self, agent: Agent) -> None:
        """Raises ``Conflict`` when the id exists."""
        ...

    async def get_agent(self, agent_id: str) -> Agent | None: ...
    async def agent_by_token_hash(self, token_hash: str) -> Agent | None: ...
    async def list_agents(self) -> list[Agent]: ...
    async def set_agent_suspended(self, agent_id: str, suspended: bool) -> Agent:
        """Raises ``NotFound``."""
        ...

    # requests
    async def insert_request(
        self,
        request: Request,
        attestation: bytes | None = None,
        event: Event | None = None,
        *,
        max_pending: int | None = None,
    ) -> Request:
        """Insert a new request (and its first attestation). Returns it with
        ``last_log_index`` set. Raises ``Conflict`` when (agent, idempotency key) exists,
        ``RateLimited`` when ``max_pending`` is given and the agent has that many pending
        (the count and the insert are one step for every writer of the store)."""
        ...

    async def get_request(self, request_id: str) -> Request | None: ...
    async def request_by_idempotency_key(self, agent_id: str, key: str) -> Request | None: ...
    async def list_requests(
        self,
        *,
        status: Status | None = None,
        agent_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[Request]:
        """Newest first."""
        ...

    async def session_calls(self, key: str, since: datetime) -> list[SessionCalls]:
        """Calls recorded with session key ``key`` since ``since``, summarised per label set
        (SPEC §5 Sessions; one indexed query)."""
        ...

    async def commit(self, change: Change) -> Request:
        """Apply ``change`` if ``change.before.version`` is current; returns ``change.after``
        with ``last_log_index`` set. Raises ``Conflict`` when stale or when the vote's
        approver already voted on the request."""
        ...

    async def votes(self, request_id: str) -> list[Vote]: ...

    # deliveries owed (``Delivery``): ``insert_request`` and ``commit`` record them in the
    # transaction that owes them
    async def deliveries_due(self, kind: Delivery, now: datetime, limit: int) -> list[OwedDelivery]:
        """Deliveries of ``kind`` whose holder's time ran out by ``now``, oldest first."""
        ...

    async def hold_delivery(
        self, owed: OwedDelivery, until: datetime, *, attempts: int, taking: datetime | None = None
    ) -> OwedDelivery | None:
        """Compare-and-set on ``owed.version``: hold it until ``until`` (``taking``: only if
        its holder's time ran out by then). None when somebody else took or settled it."""
        ...

    async def settle_delivery(self, request_id: str, kind: Delivery) -> None: ...

    async def request_view(
        self, request_id: str, platform: Platform | None = None
    ) -> tuple[Request | None, list[Vote], list[Post]]:
        """The request, its votes and (with ``platform``) its card copies there, in one read:
        one hop to the store instead of one per table."""
        ...

    async def pending_timers(
        self,
        *,
        since: datetime | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 5000,
    ) -> list[PendingTimer]:
        """Pending requests' schedules oldest first (by ``created_at``, then id): those
        created at or after ``since``, strictly after the ``(created_at, id)`` key ``after``
        (the last row of the previous page)."""
        ...

    # rate limits
    async def take_rate(self, key: str, window_start: datetime, limit: int) -> bool:
        """Atomically count one hit in the fixed window; False (and no count) at the limit."""
        ...

    # where cards went
    async def add_post(self, post: Post) -> None: ...
    async def posts(self, request_id: str, platform: Platform | None = None) -> list[Post]: ...

    # the Merkle log
    async def log_size(self) -> int: ...
    async def log_entries(self, start: int, stop: int) -> list[LogEntry]: ...
    async def log_entries_for(self, request_id: str) -> list[LogEntry]: ...
    async def log_root(self, size: int) -> bytes: ...
    async def inclusion_proof(self, index: int, size: int) -> list[bytes]: ...
    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]: ...
    async def latest_checkpoint(self) -> Checkpoint | None: ...
    async def add_checkpoint(self, checkpoint: Checkpoint) -> None: ...
    async def set_checkpoint_note(self, size: int, root: bytes, note: str) -> None: ...
    async def recent_checkpoints(self, limit: int) -> list[Checkpoint]: ...


class NoticeKind(enum.StrEnum):
    CREATED = "created"  # a new confirm (cards) or notify (information card) request
    VOTED = "voted"  # a vote that did not yet reach quorum
    DECIDED = "decided"  # final: approved / denied / expired / cancelled
    REMINDER = "reminder"  # escalation step: remind the approvers
    ESCALATED = "escalated"  # escalation step: cards to an additional group
    PAGE = "page"  # escalation step: page the escalation channel


@dataclass(frozen=True, slots=True)
class Notice:
    """Something an approval channel should show. ``groups`` are the groups concerned
    (for ``ESCALATED``, the newly added group)."""

    kind: NoticeKind
    request: Request
    votes: tuple[Vote, ...] = ()
    groups: tuple[str, ...] = ()
    log_index: int | None = None


@runtime_checkable
class ApprovalChannel(Protocol):
    """A place where humans see cards and decide (Slack, Teams, console)."""

    platform: Platform

    async def deliver(self, notice: Notice) -> None:
        """Post, update or reply as ``notice`` requires. Raises ``ChannelError``."""
        ...


Undeliverable = Callable[[Request, str, ChannelError], Awaitable[None]]
"""``async def hook(request, group, error)``: a channel could not deliver ``request``'s card to
``group`` (after its retries). Every channel that posts cards takes one (escalation brings the
next step forward, SPEC §8); the hook never allows anything."""


class Pager(Protocol):
    async def trigger(self, request: Request, summary: str) -> None:
        """Raises ``ChannelError`` after retries are exhausted."""
        ...

    async def resolve(self, request: Request) -> None: ...


class Routes(Protocol):
    """Facts a channel learned about where to reach people, shared by every process
    (``bot.store.routes.RouteStore``); raises ``StoreError``."""

    async def remember(
        self, platform: str, kind: str, key: str, value: str, *, at: datetime
    ) -> None: ...
    async def lookup(self, platform: str, kind: str, key: str) -> str | None: ...


class Signer(Protocol):
    """Signs evidence with the current key (``bot.evidence.keys.KeyRing``)."""

    @property
    def kid(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


__all__ = [
    "ApprovalChannel",
    "Clock",
    "Notice",
    "NoticeKind",
    "Pager",
    "Routes",
    "Signer",
    "Store",
]
