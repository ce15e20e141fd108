"""Use cases of signoff: submit, decide, cancel, expire, record_execution, suspend.

``Gate`` depends on ports only (store, clock, approval channels, pager) plus the pure policy
and evidence packages, and is the only door to a request: adapters read through its read side
(``bot.reads``) and change state through its use cases. Every state change is a step function
(``bot.transition``; the steps live in ``bot.voting``, ``bot.execution``, ``bot.escalation``)
run by ``Gate._transition`` (``bot.door``), which owns the read, the retry on conflict, the
attestation, the commit and the publishing. New requests are built in ``bot.submission``,
agent accounts kept by ``bot.agents``; long-polls wait in ``bot.reads``. Every failure path
ends in deny or "still pending", never in allow.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from bot.agents import Agents
from bot.caps import AgentCaps
from bot.domain import (
    DELIVERY_HOLD,
    JSON,
    Agent,
    Approver,
    Delivery,
    Event,
    Outcome,
    Request,
    Review,
    Status,
    Tier,
    Verdict,
    Vote,
    owes_cards,
)
from bot.door import Door
from bot.edits import Proposal
from bot.errors import Conflict, Forbidden, StoreError
from bot.evidence.grant import issue_grant
from bot.evidence.keys import KeyRing
from bot.evidence.statement import attest
from bot.execution import execution_step
from bot.fanout import Fanout
from bot.ids import AUTH_CACHE_TTL, AuthCache
from bot.policy.evaluator import evaluate
from bot.policy.holder import PolicyHolder
from bot.policy.session import NO_SESSION
from bot.ports import Clock, Notice, NoticeKind, Store
from bot.reads import RESCAN_S, View
from bot.submission import Submission, new_request, session_key_of, session_of, take_rate
from bot.transition import Transition, attempt
from bot.voting import CARD_IN_FULL, NotShownInFull, StepUpRequired, check_vote, vote_step

log = logging.getLogger(__name__)

#: how many times a new request's cards are announced again after its announcing process
#: stopped, before they are given up (the escalation ladder still runs)
ANNOUNCE_ATTEMPTS = 3


class Gate(Agents, Door):
    """The approval service. One instance per process, shared by the API and the adapters.
    What happens after a commit (cards, listeners, pager, long-polls) is its ``fanout``."""

    def __init__(
        self,
        *,
        store: Store,
        policies: PolicyHolder,
        keys: KeyRing,
        clock: Clock,
        fanout: Fanout | None = None,
        grant_ttl: timedelta = timedelta(minutes=10),
        issuer: str = "signoff",
        auth_cache_ttl: float = AUTH_CACHE_TTL,
        caps: AgentCaps | None = None,
    ) -> None:
        self.fanout = fanout or Fanout()
        self.metrics = self.fanout.metrics
        self.store = store
        self.policies = policies
        self.keys = keys
        self.clock = clock
        self.grant_ttl = grant_ttl
        self.issuer = issuer
        self.auth_cache = AuthCache(auth_cache_ttl)
        self.caps = caps or AgentCaps()

    def publish(self, notice: Notice) -> None:
        """Send a notice to every channel in the background."""
        self.fanout.publish(notice)

    async def drain(self, grace: float = 10.0, *, cancel: bool = False) -> int:
        """Wait for background deliveries and listeners (``Fanout.drain``)."""
        return await self.fanout.drain(grace, cancel=cancel)

    # ------------------------------------------------------------------ the kill switch

    async def suspend_agent(self, agent_id: str) -> list[Request]:
        """Suspend an agent (kill switch) and deny its pending requests at once."""
        await self.set_suspended(agent_id, True)
        denied = []
        for request in await self.store.list_requests(
            status=Status.PENDING, agent_id=agent_id, limit=None
        ):
            done = await self._finish(
                request.id, Status.DENIED, Event.DENIED, f"agent {agent_id} was suspended"
            )
            if done is not None:
                denied.append(done)
        return denied

    # ------------------------------------------------------------------ submit

    async def submit(self, agent: Agent, sub: Submission) -> tuple[Request, bool]:
        """Evaluate and record a tool call. Returns (request, created); ``created`` is False
        for an idempotent replay. Raises ``Conflict`` (key reused with another body),
        ``RateLimited``, ``Forbidden`` (suspended)."""
        if agent.suspended:
            raise Forbidden(f"agent {agent.id!r} is suspended")
        if sub.idempotency_key is not None:
            replay = await self._replay(agent, sub)
            if replay is not None:
                return replay, False
        now = self.clock.now()
        policy = self.policies.current
        # The registered digest stays the agent's; a differing claim in the body is only a
        # claim, which policy sees (and cards show) separately (issue 12 item 7).
        artifact = agent.artifact_digest
        claimed = sub.artifact_digest if sub.artifact_digest != artifact else None
        view = agent if claimed is None else replace(agent, claimed_artifact_digest=claimed)
        key = session_key_of(policy, sub.call, agent)
        session = NO_SESSION if key is None else await session_of(self.store, policy, key, now)
        ev = evaluate(policy, sub.call, view, now, session)
        if ev.rate_limit is not None:
            await take_rate(self.store, ev, agent, sub.call, now, self.metrics)
        request, event = new_request(
            agent,
            sub,
            ev,
            policy,
            now,
            claimed=claimed,
            signer=self.keys,
            issuer=self.issuer,
            grant_ttl=self.grant_ttl,
        )
        envelope = (
            attest(request, event, self.keys, at=now, reason=request.reason, prev_index=None)
            if event is not None
            else None
        )
        # SPEC §6: a per-agent cap on pending requests (429)
        cap = self.caps.max_pending if request.status is Status.PENDING else None
        stored = await attempt(self.store.insert_request(request, envelope, event, max_pending=cap))
        if isinstance(stored, Conflict):
            # the request id or the idempotency key was taken: a replay racing this one
            replay = await self._replay(agent, sub) if sub.idempotency_key is not None else None
            if replay is None:
                raise stored
            return replay, False
        self.metrics.count_request(str(stored.tier), str(stored.status))
        if owes_cards(stored):
            self._announce_new(stored)
        if stored.status.final:
            self.fanout.final(stored)
        elif stored.status is Status.PENDING:
            self.fanout.created(stored)
        return stored, True

    # ------------------------------------------------------------------ announcing

    def _announce_new(self, request: Request, votes: tuple[Vote, ...] = ()) -> None:
        """Cards for a new request to every channel; the record of the cards owed
        (``Delivery.CARDS``, written with the request) is forgotten once each channel had its
        try."""

        async def announced() -> None:
            try:
                await self.settle_delivery(request.id, Delivery.CARDS)
            except StoreError as exc:
                log.warning(
                    "cards of request %s sent, but not recorded (%s); they may be sent again",
                    request.id,
                    exc,
                )

        notice = Notice(NoticeKind.CREATED, request, votes, groups=request.approver_groups)
        self.fanout.publish(notice, then=announced)

    async def announce_owed(self, limit: int = 100) -> int:
        """Announce the new requests whose process stopped before each channel had its try
        at their cards (killed, or a shutdown whose grace ran out): the cards owed whose hold
        ran out. A confirm request decided meanwhile is not announced (its cards would only
        say so); after ``ANNOUNCE_ATTEMPTS`` takes the cards are given up. Returns how many
        requests were announced. Raises ``StoreError``."""
        announced = 0
        takes = self.take_due(Delivery.CARDS, DELIVERY_HOLD, count_take=True, limit=limit)
        async for held, request in takes:
            given_up = held.attempts > ANNOUNCE_ATTEMPTS
            if given_up:
                log.warning(
                    "cards of request %s given up: %d processes stopped before each channel "
                    "had its try",
                    held.request_id,
                    held.attempts - 1,
                )
            if (
                given_up
                or request is None
                or (request.status.final and request.tier is Tier.CONFIRM)
            ):
                await self.settle_delivery(held.request_id, Delivery.CARDS)
                continue
            log.info("cards of request %s announced again: its process stopped", request.id)
            self._announce_new(request, tuple(await self.store.votes(request.id)))
            announced += 1
        return announced

    async def _replay(self, agent: Agent, sub: Submission) -> Request | None:
        if sub.idempotency_key is None:
            return None
        existing = await self.store.request_by_idempotency_key(agent.id, sub.idempotency_key)
        if existing is None:
            return None
        if existing.body_sha256 != sub.body_sha256:
            raise Conflict("Idempotency-Key was already used with a different request body")
        return existing

    def _approve(self, request: Request, now: datetime) -> Request:
        token, expires = issue_grant(
            replace(request, status=Status.APPROVED),
            self.keys,
            issuer=self.issuer,
            ttl=self.grant_ttl,
            now=now,
        )
        return replace(request, status=Status.APPROVED, grant=token, grant_expires_at=expires)

    # ------------------------------------------------------------------ decide

    async def decide(
        self,
        request_id: str,
        approver: Approver,
        verdict: Verdict,
        reason: str = "",
        *,
        memberships: Collection[str],
        review: Review = CARD_IN_FULL,
        edit: Proposal | None = None,
        step_up: Mapping[str, JSON] | None = None,
    ) -> Request:
        """Record one human's verdict. ``memberships`` are the groups the platform adapter
        found the approver in; ``review`` is what the adapter showed them (recorded in the
        attestation). Raises ``NotFound``, ``NotAuthorized`` (not an approver of the
        request's groups, the requester, or an approval of arguments shown only cut:
        ``NotShownInFull``), ``Conflict`` (already final, this human already voted on these
        arguments, or the arguments changed since ``review`` showed them), ``RequestError``
        (deny without a reason, a bad ``edit``).

        ``edit`` is the approver's changed arguments (rule option ``editable``): their vote
        approves the edited version, which the grant then binds; approvals of the earlier
        version stop counting (``bot.edits``). ``step_up`` is the verified security-key record
        an adapter made (rule option ``step_up``): it goes into the attestation; approving a
        ``step_up`` request without one raises ``StepUpRequired``."""
        reason = reason.strip()
        # Votes count people (SPEC §5): the account resolves to its person, who is a member
        # of the groups that list them as well as those the adapter found the account in.
        people = self.policies.current.people
        approver = people.identify(approver)
        check_vote(approver, verdict, reason, review, edit, step_up, self.metrics)
        step = vote_step(
            approver,
            verdict,
            reason,
            memberships={*memberships, *people.groups_of(approver.person)},
            people=people,
            review=review,
            edit=edit,
            step_up=step_up,
            metrics=self.metrics,
            approve=self._approve,
        )
        stored = await self._transition(request_id, step, votes=True)
        self.metrics.votes.labels(approver.platform.value, verdict.value).inc()
        return stored

    # ------------------------------------------------------------------ other changes

    async def cancel(self, request_id: str, agent: Agent) -> Request:
        """The agent withdraws its own pending request. Raises ``NotFound``/``Conflict``."""
        done = await self._finish(
            request_id, Status.CANCELLED, Event.CANCELLED, "cancelled by agent", agent=agent
        )
        if done is None:
            request = await self.get(request_id, agent)
            raise Conflict(f"request is already {request.status.value}")
        return done

    async def expire(
        self, request_id: str, reason: str = "no decision before the deadline"
    ) -> Request | None:
        """Deny a pending request whose time ran out (``expired``). None if already final."""
        return await self._finish(request_id, Status.EXPIRED, Event.EXPIRED, reason)

    async def _finish(
        self,
        request_id: str,
        status: Status,
        event: Event,
        reason: str,
        *,
        agent: Agent | None = None,
    ) -> Request | None:
        """Make a pending request final (``agent``: only that agent's own, else
        ``NotFound``); None when it already was."""

        def step(request: Request, votes: Sequence[Vote], now: datetime) -> Transition | None:
            if request.status.final:
                return None
            after = replace(
                request, status=status, decided_at=now, reason=reason, version=request.version + 1
            )
            return Transition(after, event, reason=reason, notices=((NoticeKind.DECIDED, ()),))

        return await self._transition(request_id, step, agent=agent)

    async def record_execution(
        self,
        request_id: str,
        agent: Agent,
        grant: str,
        outcome: Outcome,
        detail: Mapping[str, JSON] | None = None,
        arguments: Mapping[str, JSON] | None = None,
    ) -> Request:
        """Consume the grant on ``started`` (409 on reuse) and attest outcomes.
        Raises ``NotFound``, ``Conflict``, ``EvidenceError`` (grant does not bind)."""
        step = execution_step(agent.id, grant, outcome, self.keys, detail, arguments)
        return await self._transition(request_id, step, agent=agent)


__all__ = [
    "CARD_IN_FULL",
    "RESCAN_S",
    "Gate",
    "NotShownInFull",
    "StepUpRequired",
    "Submission",
    "View",
]
