"""What one state change of a request is, as data: the shape of every step ``Gate`` commits.

A *step* is a small function ``(request, votes, now) -> Transition`` (``Step``; a
``MaybeStep`` may also return ``None``):
it checks the request as read (raising ``RequestError``s to refuse), and says what the request
becomes, which event is attested with which details, and which notices go out once it is
committed; ``None`` means there is nothing to do (the request is already where the step would
take it). ``Gate._transition`` owns everything around it: the read, the retry when another
writer got there first, the attestation, the commit and the publishing. Steps live beside the
use case they serve (``bot.voting``, ``bot.execution``, ``bot.escalation``).

``attempt`` is the one place in ``bot`` that catches ``Conflict``. This module must not import
``adapters`` or any chat SDK.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from bot.domain import Approver, Change, Event, Request, Review, Vote
from bot.errors import Conflict, StoreError
from bot.evidence.statement import attest
from bot.ports import NoticeKind, Signer

T = TypeVar("T")

#: how often a transition re-reads and re-checks after losing a compare-and-set
CAS_RETRIES = 8


@dataclass(frozen=True, slots=True)
class Transition:
    """What a step makes of a request. ``after`` is the new state, one version on (set in the
    step's own ``replace``: copying a request is not free). ``event`` and the details below
    go into the attestation as ``attest`` takes them. ``votes`` are every vote after the
    change when the step counted them (a decision): they are attested and published;
    otherwise notices carry the votes as stored. ``notices`` go out once the change is
    committed, each to ``groups`` (the request's approver groups when empty)."""

    after: Request
    event: Event
    vote: Vote | None = None
    votes: tuple[Vote, ...] | None = None
    approver: Approver | None = None
    group: str | None = None
    reason: str | None = None
    detail: Mapping[str, Any] | None = None
    review: Review | None = None
    step_up: Mapping[str, Any] | None = None
    notices: tuple[tuple[NoticeKind, tuple[str, ...]], ...] = ()


#: a step: the request as read, its votes (empty unless the transition asked for them) and the
#: time of the change; returns the change; raises to refuse
Step = Callable[[Request, Sequence[Vote], datetime], Transition]
#: a step that may find nothing to do (returns ``None``: the request is left as it is)
MaybeStep = Callable[[Request, Sequence[Vote], datetime], Transition | None]


def attested(request: Request, change: Transition, now: datetime, signer: Signer) -> Change:
    """The compare-and-set of ``change`` on ``request`` as read: the new state one version on,
    with its signed attestation chained to the request's previous log entry."""
    after = change.after
    if after.version != request.version + 1:  # a step's bug: never commit a stale write
        raise StoreError(f"a change of request {request.id} must move it one version on")
    envelope = attest(
        after,
        change.event,
        signer,
        at=now,
        approver=change.approver,
        group=change.group,
        reason=change.reason,
        votes=change.votes or (),
        detail=change.detail,
        prev_index=request.last_log_index,
        review=change.review,
        step_up=change.step_up,
    )
    return Change(request, after, change.vote, attestation=envelope, event=change.event)


async def attempt(operation: Awaitable[T]) -> T | Conflict:
    """The operation's result, or the ``Conflict`` it raised (another writer got there
    first: a compare-and-set lost, a unique key taken). The caller decides in plain code what
    a lost race means (re-read and retry, or answer with what the winner stored)."""
    try:
        return await operation
    except Conflict as lost:
        return lost


__all__ = ["CAS_RETRIES", "MaybeStep", "Step", "Transition", "attempt", "attested"]
