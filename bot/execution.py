"""The agent's report of running an approved call, as a step for ``Gate._transition``.

``started`` consumes the grant (once: a second ``started`` is a ``Conflict``); ``succeeded``
and ``failed`` attest the outcome with the agent's detail. The grant must be the request's
own and still verify for the arguments the agent ran (SPEC §7). Must not import ``adapters``.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from bot.domain import JSON, Event, Outcome, Request, Status, Vote
from bot.errors import Conflict, EvidenceError
from bot.evidence.grant import verify_grant
from bot.evidence.keys import KeyRing
from bot.transition import Step, Transition

_EVENTS = {
    Outcome.STARTED: Event.EXECUTION_STARTED,
    Outcome.SUCCEEDED: Event.EXECUTED,
    Outcome.FAILED: Event.EXECUTION_FAILED,
}


def execution_step(
    agent_id: str,
    grant: str,
    outcome: Outcome,
    keys: KeyRing,
    detail: Mapping[str, JSON] | None = None,
    arguments: Mapping[str, JSON] | None = None,
) -> Step:
    """The step recording ``outcome``. Raises, when run, ``Conflict`` (not approved, grant
    already consumed, outcome already recorded) and ``EvidenceError`` (the grant does not
    bind this request and these arguments)."""

    def step(request: Request, votes: Sequence[Vote], now: datetime) -> Transition:
        del votes
        if request.status is not Status.APPROVED or request.grant is None:
            raise Conflict(f"request is {request.status.value}, not approved")
        used = request.grant_used_at is not None
        if outcome is Outcome.STARTED and used:
            raise Conflict("grant already consumed")
        if outcome is not Outcome.STARTED and request.outcome in (
            Outcome.SUCCEEDED,
            Outcome.FAILED,
        ):
            raise Conflict(f"outcome already recorded ({request.outcome})")
        if not hmac.compare_digest(grant, request.grant):
            raise EvidenceError("grant does not belong to this request")
        verify_grant(
            grant,
            keys,
            now=now if not used else request.grant_used_at or now,
            request_id=request.id,
            agent_id=agent_id,
            tool=request.call.tool,
            arguments=arguments if arguments is not None else request.current_arguments,
        )
        after = replace(
            request,
            grant_used_at=request.grant_used_at or now,
            outcome=outcome,
            version=request.version + 1,
        )
        return Transition(after, _EVENTS[outcome], detail=dict(detail or {}))

    return step


__all__ = ["execution_step"]
