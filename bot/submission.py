"""A new request from what an agent asked for and what the policy said (SPEC §5, §6).

``session_key_of``/``session_of`` find and read the call's session and ``take_rate`` counts it
against its rule's rate limit (the two store reads policy needs before the request exists).

``new_request`` builds the ``Request`` once in its final state (no chain of ``replace``: this
is the hot path of every auto-tier call): blocked calls are denied, auto and notify calls
approved with a signed grant, confirm calls left pending with their deadline and ladder.
Pure over domain values and a signer; ``Gate.submit`` stores and publishes it. Must not
import ``adapters``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain import Agent, EscalationStep, Event, PolicyRef, Request, Status, Tier, ToolCall
from bot.errors import RateLimited
from bot.evidence.canonical import call_digests
from bot.evidence.grant import sign_grant
from bot.ids import request_ids
from bot.metrics import Metrics
from bot.policy.evaluator import Evaluation, rate_key, window_start
from bot.policy.model import Policy
from bot.policy.session import NO_SESSION, SessionView, session_key, summarise
from bot.ports import Signer, Store


@dataclass(frozen=True, slots=True)
class Submission:
    """What an agent asked for; identity comes from the token, never from the body."""

    call: ToolCall
    artifact_digest: str | None = None
    callback_url: str | None = None
    idempotency_key: str | None = None
    body_sha256: str | None = None


def session_key_of(policy: Policy, call: ToolCall, agent: Agent) -> str | None:
    """The call's session key (SPEC §5), or None when the policy has no ``sessions`` or the
    call gives no key. Raises ``RequestError`` for a session key of the wrong type."""
    spec = policy.sessions
    if spec is None:
        return None
    return session_key(spec, call.arguments, call.context, agent.id)


async def session_of(store: Store, policy: Policy, key: str | None, now: datetime) -> SessionView:
    """The session of key ``key`` (``session_key_of``): one store query, none without a
    key (callers that have none skip the await: this is the auto tier's hot path)."""
    spec = policy.sessions
    if spec is None or key is None:
        return NO_SESSION
    return summarise(key, await store.session_calls(key, now - spec.window))


async def take_rate(
    store: Store, ev: Evaluation, agent: Agent, call: ToolCall, now: datetime, metrics: Metrics
) -> None:
    """Count an auto or notify call against its rule's ``rate_limit`` (SPEC §6). Raises
    ``RateLimited`` (nothing counted) when the window is full."""
    rule = ev.rule
    if ev.tier in (Tier.AUTO, Tier.NOTIFY) and ev.rate_limit is not None and rule is not None:
        start = window_start(now, ev.rate_limit.per)
        key = rate_key(rule, agent.id, call.tool)
        if not await store.take_rate(key, start, ev.rate_limit.max):
            metrics.rate_limited.inc()
            retry = max(1, int((start + ev.rate_limit.per - now).total_seconds()) + 1)
            raise RateLimited(
                f"rule {rule.name!r} allows {ev.rate_limit.max} calls per "
                f"{int(ev.rate_limit.per.total_seconds())}s; try again later",
                retry_after=retry,
            )


def new_request(
    agent: Agent,
    sub: Submission,
    ev: Evaluation,
    policy: Policy,
    now: datetime,
    *,
    claimed: str | None,
    signer: Signer,
    issuer: str,
    grant_ttl: timedelta,
) -> tuple[Request, Event | None]:
    """The request as the policy decided it, and the event to attest with it (``None`` for a
    pending request: nothing is decided yet). ``claimed`` is a differing artifact digest the
    body claimed (the agent's registered one stays the request's)."""
    rule, tier = ev.rule, ev.tier
    request_id = request_ids()
    args_digest, call_digest = call_digests(request_id, agent.id, sub.call.tool, sub.call.arguments)
    event: Event | None = None
    status, decided_at, reason = Status.PENDING, None, None
    escalation: tuple[EscalationStep, ...] = ()
    deadline: datetime | None = None
    rule_name = rule.name if rule else None
    if tier is Tier.BLOCK:
        event = Event.BLOCKED
        status, decided_at = Status.DENIED, now
        reason = ev.reason or f"blocked by rule {rule_name}"
    elif tier is Tier.AUTO or tier is Tier.NOTIFY:
        event = Event.AUTO_ALLOWED if tier is Tier.AUTO else Event.NOTIFIED
        status, decided_at = Status.APPROVED, now
    else:
        escalation = ev.escalation
        deadline = now + (ev.deadline_offset or ev.sla or policy.default_sla)
    grant, grant_expires = None, None
    if status is Status.APPROVED:
        grant, grant_expires = sign_grant(
            request_id=request_id,
            agent_id=agent.id,
            tool=sub.call.tool,
            arguments_sha256=args_digest,
            call_sha256=call_digest,
            policy_digest=policy.digest,
            signer=signer,
            issuer=issuer,
            ttl=grant_ttl,
            now=now,
        )
    confirm = rule is not None and tier is Tier.CONFIRM
    request = Request(
        id=request_id,
        agent_id=agent.id,
        call=sub.call,
        tier=tier,
        status=status,
        policy=PolicyRef(policy.digest, policy.version, rule_name, policy.signer),
        requirement=ev.requirement,
        created_at=now,
        arguments_sha256=args_digest,
        call_sha256=call_digest,
        artifact_digest=agent.artifact_digest,
        claimed_artifact_digest=claimed,
        escalation=escalation,
        deadline=deadline,
        decided_at=decided_at,
        reason=reason,
        callback_url=sub.callback_url,
        idempotency_key=sub.idempotency_key,
        body_sha256=sub.body_sha256,
        grant=grant,
        grant_expires_at=grant_expires,
        editable=rule.editable if confirm and rule is not None else False,
        step_up=rule.step_up if confirm and rule is not None else None,
        session=ev.session.key,
        labels=ev.labels,
    )
    return request, event


__all__ = ["Submission", "new_request", "session_key_of", "session_of", "take_rate"]
