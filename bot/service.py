"""Use cases of signoff: submit, decide, cancel, expire, record_execution, suspend.

``Gate`` depends on ports only (store, clock, approval channels, pager) plus the pure policy
and evidence packages. Every state change is a compare-and-set committed together with its
attestation; every failure path ends in deny or "still pending", never in allow.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bot.approvals import SelfApproval, authorising_group, quorum_met
from bot.caps import AgentCaps
from bot.domain import (
    JSON,
    Agent,
    Approver,
    Change,
    EscalationStep,
    Event,
    Outcome,
    PolicyRef,
    Request,
    Review,
    Shown,
    Status,
    Tier,
    ToolCall,
    Verdict,
    Vote,
)
from bot.edits import Proposal, check_edit
from bot.errors import (
    Conflict,
    EvidenceError,
    Forbidden,
    NotAuthorized,
    NotFound,
    RateLimited,
    RequestError,
)
from bot.evidence.canonical import call_digests
from bot.evidence.grant import issue_grant, sign_grant, verify_grant
from bot.evidence.keys import KeyRing
from bot.evidence.statement import attest
from bot.fanout import Fanout
from bot.ids import AUTH_CACHE_TTL, AuthCache, new_token, request_ids, token_hash
from bot.policy.evaluator import evaluate, rate_key, window_start
from bot.policy.holder import PolicyHolder
from bot.policy.model import Policy
from bot.policy.session import NO_SESSION, SessionView, session_key, summarise
from bot.ports import Clock, Notice, NoticeKind, Store

log = logging.getLogger(__name__)

_CAS_RETRIES = 8
#: a long-poll's re-read cadence while the store's change feed is down
RESCAN_S = 2.0

CARD_IN_FULL = Review(Shown.FULL, "card")
"""The default review: a card that showed the arguments whole."""


class NotShownInFull(NotAuthorized):
    """An approval from a view that showed the arguments cut (SPEC §8)."""


class StepUpRequired(NotAuthorized):
    """An approval of a ``step_up`` rule without a verified security-key assertion."""


@dataclass(frozen=True, slots=True)
class Submission:
    """What an agent asked for; identity comes from the token, never from the body."""

    call: ToolCall
    artifact_digest: str | None = None
    callback_url: str | None = None
    idempotency_key: str | None = None
    body_sha256: str | None = None


class Gate:
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
        """Send a notice to every channel in the background (used by escalation)."""
        self.fanout.publish(notice)

    async def drain(self, grace: float = 10.0) -> None:
        """Wait for background deliveries and listeners (graceful shutdown)."""
        await self.fanout.drain(grace)

    # ------------------------------------------------------------------ agents

    async def register_agent(
        self, agent_id: str, *, artifact_digest: str | None = None, labels: Mapping[str, str] = {}
    ) -> tuple[Agent, str]:
        """Create an agent and return it with its one-time token. Raises ``Conflict``."""
        token = new_token()
        agent = Agent(
            id=agent_id,
            token_hash=token_hash(token),
            created_at=self.clock.now(),
            artifact_digest=artifact_digest,
            labels=dict(labels),
        )
        await self.store.add_agent(agent)
        return agent, token

    async def authenticate(self, token: str) -> Agent:
        """The agent owning ``token``. Raises ``NotAuthorized`` (unknown) or ``Forbidden``.

        A successful lookup of an active agent is reused for ``auth_cache_ttl`` seconds (the
        hot path then makes no store call). Unknown tokens and suspended agents are never
        cached. ``suspend_agent``/``resume_agent`` in this process drop the agent's entries
        at once; a suspension made by another process sharing the database reaches this
        process's new requests within ``auth_cache_ttl`` (that process denies the agent's
        pending requests itself, at once).
        """
        digest = token_hash(token)
        cached = self.auth_cache.get(digest)
        if cached is not None:
            return cached
        epoch = self.auth_cache.epoch
        agent = await self.store.agent_by_token_hash(digest)
        if agent is None or not hmac.compare_digest(agent.token_hash, digest):
            raise NotAuthorized("unknown agent token")
        if agent.suspended:
            raise Forbidden(f"agent {agent.id!r} is suspended")
        self.auth_cache.put(digest, agent, epoch)
        return agent

    def forget_agent(self, agent_id: str) -> None:
        """Drop cached authentications of ``agent_id`` (after a change to the agent)."""
        self.auth_cache.forget(agent_id)

    async def suspend_agent(self, agent_id: str) -> list[Request]:
        """Suspend an agent (kill switch) and deny its pending requests at once."""
        self.forget_agent(agent_id)
        try:
            await self.store.set_agent_suspended(agent_id, True)
        finally:
            self.forget_agent(agent_id)
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

    async def resume_agent(self, agent_id: str) -> Agent:
        try:
            return await self.store.set_agent_suspended(agent_id, False)
        finally:
            self.forget_agent(agent_id)

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
        ev = evaluate(
            policy, sub.call, view, now, await self._session(policy, sub.call, agent, now)
        )
        rule = ev.rule
        if ev.tier in (Tier.AUTO, Tier.NOTIFY) and ev.rate_limit is not None and rule is not None:
            start = window_start(now, ev.rate_limit.per)
            key = rate_key(rule, agent.id, sub.call.tool)
            if not await self.store.take_rate(key, start, ev.rate_limit.max):
                self.metrics.rate_limited.inc()
                retry = max(1, int((start + ev.rate_limit.per - now).total_seconds()) + 1)
                raise RateLimited(
                    f"rule {rule.name!r} allows {ev.rate_limit.max} calls per "
                    f"{int(ev.rate_limit.per.total_seconds())}s; try again later",
                    retry_after=retry,
                )
        request_id = request_ids()
        args_digest, call_digest = call_digests(
            request_id, agent.id, sub.call.tool, sub.call.arguments
        )
        # The request is built once in its final state (no chain of ``replace``): this is the
        # hot path of every auto-tier call.
        event: Event | None = None
        status, decided_at, reason = Status.PENDING, None, None
        escalation: tuple[EscalationStep, ...] = ()
        deadline: datetime | None = None
        rule_name = rule.name if rule else None
        if ev.tier is Tier.BLOCK:
            event = Event.BLOCKED
            status, decided_at = Status.DENIED, now
            reason = ev.reason or f"blocked by rule {rule_name}"
        elif ev.tier in (Tier.AUTO, Tier.NOTIFY):
            event = Event.AUTO_ALLOWED if ev.tier is Tier.AUTO else Event.NOTIFIED
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
                signer=self.keys,
                issuer=self.issuer,
                ttl=self.grant_ttl,
                now=now,
            )
        request = Request(
            id=request_id,
            agent_id=agent.id,
            call=sub.call,
            tier=ev.tier,
            status=status,
            policy=PolicyRef(policy.digest, policy.version, rule_name, policy.signer),
            requirement=ev.requirement,
            created_at=now,
            arguments_sha256=args_digest,
            call_sha256=call_digest,
            artifact_digest=artifact,
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
            editable=rule.editable if rule is not None and ev.tier is Tier.CONFIRM else False,
            step_up=rule.step_up if rule is not None and ev.tier is Tier.CONFIRM else None,
            session=ev.session.key,
            labels=ev.labels,
        )
        envelope = (
            attest(request, event, self.keys, at=now, reason=request.reason, prev_index=None)
            if event is not None
            else None
        )
        pending = status is Status.PENDING
        if pending:  # SPEC §6: a per-agent cap on pending requests (429)
            await self.caps.reserve_pending(agent.id, self.store.count_pending)
        try:
            stored = await self.store.insert_request(request, envelope, event)
        except Conflict:
            if sub.idempotency_key is None:
                raise
            replay = await self._replay(agent, sub)
            if replay is None:
                raise
            return replay, False
        finally:
            if pending:
                self.caps.release_pending(agent.id)
        self.metrics.requests.labels(stored.tier.value, stored.status.value).inc()
        if stored.tier in (Tier.CONFIRM, Tier.NOTIFY):
            self.fanout.publish(Notice(NoticeKind.CREATED, stored, groups=stored.approver_groups))
        if stored.status is Status.PENDING:
            self.fanout.created(stored)
        if stored.status.final:
            self.fanout.final(stored)
        return stored, True

    async def _session(
        self, policy: Policy, call: ToolCall, agent: Agent, now: datetime
    ) -> SessionView:
        """The call's session (SPEC §5): one store query when the policy has ``sessions`` and
        the call a key. Raises ``RequestError`` for a session key of the wrong type."""
        spec = policy.sessions
        if spec is None:
            return NO_SESSION
        key = session_key(spec, call.arguments, call.context, agent.id)
        if key is None:
            return NO_SESSION
        return summarise(key, await self.store.session_calls(key, now - spec.window))

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

    # ------------------------------------------------------------------ read

    async def get(self, request_id: str, agent: Agent | None = None) -> Request:
        """The request; with ``agent``, only that agent's own. Raises ``NotFound``."""
        request = await self.store.get_request(request_id)
        if request is None or (agent is not None and request.agent_id != agent.id):
            raise NotFound(f"no request {request_id!r}")
        return request

    async def find(self, agent: Agent, idempotency_key: str) -> Request | None:
        """The agent's own request submitted with ``idempotency_key``, if any."""
        return await self.store.request_by_idempotency_key(agent.id, idempotency_key)

    async def wait(self, request_id: str, agent: Agent, seconds: float) -> Request:
        """Return the request as soon as it is no longer pending, or after ``seconds``.
        Raises ``RateLimited`` when the agent holds ``caps.max_long_polls`` already."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        # registered before the first read: a change committed after it always wakes us;
        # one of the agent's long-poll slots held throughout (SPEC §6 cap, 429 when full)
        with self.caps.long_poll(agent.id), self.fanout.waiters.watch(request_id) as watch:
            request = await self.get(request_id, agent)
            while request.status is Status.PENDING and not self.fanout.draining:
                left = end - loop.time()
                if left <= 0:
                    break
                # Woken by a change in this process or (through the change feed) in another
                # one sharing the database; only while the feed is down, a slice of
                # ``RESCAN_S`` re-reads the store so other processes' decisions are seen.
                self.metrics.pending.inc()
                try:
                    await watch.wait(left if self.fanout.feed_live else min(left, RESCAN_S))
                finally:
                    self.metrics.pending.dec()
                request = await self.get(request_id, agent)
        return request

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
        if verdict is Verdict.DENY and not reason:
            raise RequestError("a reason is required to deny")
        # Votes count people (SPEC §5): the account resolves to its person, who is a member
        # of the groups that list them as well as those the adapter found the account in.
        people = self.policies.current.people
        approver = people.identify(approver)
        memberships = {*memberships, *people.groups_of(approver.person)}
        if verdict is Verdict.APPROVE and review.shown is not Shown.FULL:
            # SPEC §8: an approver never approves arguments they were not shown in full.
            self.metrics.refusals.labels(approver.platform.value, "not_shown_in_full").inc()
            raise NotShownInFull(
                "this card cut the arguments: use Review and approve to see them in full first"
            )
        if edit is not None and verdict is not Verdict.APPROVE:
            raise RequestError("only an approval can change the arguments")
        if step_up is not None and step_up.get("call_sha256") is None:
            raise RequestError("a step-up record must name the call it signed")
        for _ in range(_CAS_RETRIES):
            request = await self.get(request_id)
            if request.status.final:
                raise Conflict(f"request is already {request.status.value}")
            shown = review.arguments_sha256
            if shown is not None and shown != request.current_sha256:
                raise Conflict("the arguments changed since you reviewed them; review again")
            if verdict is Verdict.APPROVE and step_up is None and request.step_up is not None:
                # SPEC §5 step_up: only a verified security-key assertion approves.
                self.metrics.refusals.labels(approver.platform.value, "step_up").inc()
                raise StepUpRequired("this rule needs your security key: approve it in the console")
            if step_up is not None and step_up["call_sha256"] != request.current_call_sha256:
                # The assertion's challenge was bound to another call (an edit happened).
                raise Conflict("the call changed since your security key signed it; try again")
            votes = [
                replace(v, approver=people.identify(v.approver))
                for v in await self.store.votes(request.id)
            ]
            try:
                group = authorising_group(request, approver, memberships, votes, people)
            except NotAuthorized as exc:
                tag = "self_approval" if isinstance(exc, SelfApproval) else "not_approver"
                self.metrics.refusals.labels(approver.platform.value, tag).inc()
                raise
            now = self.clock.now()
            changed = check_edit(request, edit, approver, now) if edit is not None else None
            if changed is not None and changed.arguments_sha256 == request.current_sha256:
                changed = None  # "edited" to what is already up for approval
            version = changed.arguments_sha256 if changed else request.current_sha256
            # One person, one vote per version of the arguments (an edit resets approvals).
            earlier = next(
                (
                    v
                    for v in votes
                    if v.approver.key == approver.key
                    and (v.arguments_sha256 or request.arguments_sha256) == version
                ),
                None,
            )
            if earlier is not None:
                raise Conflict(
                    f"you have already voted on this request (as {earlier.approver.key}, "
                    f"from {earlier.approver.platform.value}); one person has one vote"
                )
            vote = Vote(request.id, approver, verdict, group, reason, now, version)
            all_votes = (*votes, vote)
            after = replace(request, version=request.version + 1, edit=changed or request.edit)
            event = Event.DENIED if verdict is Verdict.DENY else Event.APPROVED
            if verdict is Verdict.DENY:
                after = replace(after, status=Status.DENIED, decided_at=now, reason=reason)
            elif quorum_met(after, all_votes):
                after = self._approve(replace(after, decided_at=now, reason=reason or None), now)
            envelope = attest(
                after,
                event,
                self.keys,
                at=now,
                approver=approver,
                group=group,
                reason=reason or None,
                votes=all_votes,
                prev_index=request.last_log_index,
                review=review,
                step_up=step_up,
            )
            try:
                stored = await self.store.commit(
                    Change(request, after, vote=vote, attestation=envelope, event=event)
                )
            except Conflict:
                continue  # lost a race: re-read and re-check (final? duplicate vote?)
            self.metrics.votes.labels(approver.platform.value, verdict.value).inc()
            if stored.status.final:
                self.fanout.publish(
                    Notice(
                        NoticeKind.DECIDED,
                        stored,
                        all_votes,
                        stored.approver_groups,
                        stored.last_log_index,
                    )
                )
                self.fanout.final(stored)
            else:
                self.fanout.publish(
                    Notice(
                        NoticeKind.VOTED,
                        stored,
                        all_votes,
                        stored.approver_groups,
                        stored.last_log_index,
                    )
                )
            return stored
        raise Conflict("request is changing too fast; try again")

    # ------------------------------------------------------------------ other changes

    async def cancel(self, request_id: str, agent: Agent) -> Request:
        """The agent withdraws its own pending request. Raises ``NotFound``/``Conflict``."""
        await self.get(request_id, agent)
        done = await self._finish(
            request_id, Status.CANCELLED, Event.CANCELLED, "cancelled by agent"
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
        self, request_id: str, status: Status, event: Event, reason: str
    ) -> Request | None:
        for _ in range(_CAS_RETRIES):
            request = await self.get(request_id)
            if request.status.final:
                return None
            now = self.clock.now()
            after = replace(
                request, status=status, decided_at=now, reason=reason, version=request.version + 1
            )
            envelope = attest(
                after, event, self.keys, at=now, reason=reason, prev_index=request.last_log_index
            )
            try:
                stored = await self.store.commit(
                    Change(request, after, attestation=envelope, event=event)
                )
            except Conflict:
                continue
            votes = tuple(await self.store.votes(stored.id))
            self.fanout.publish(
                Notice(
                    NoticeKind.DECIDED, stored, votes, stored.approver_groups, stored.last_log_index
                )
            )
            self.fanout.final(stored)
            return stored
        raise Conflict("request is changing too fast; try again")

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
        for _ in range(_CAS_RETRIES):
            request = await self.get(request_id, agent)
            if request.status is not Status.APPROVED or request.grant is None:
                raise Conflict(f"request is {request.status.value}, not approved")
            now = self.clock.now()
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
                self.keys,
                now=now if not used else request.grant_used_at or now,
                request_id=request.id,
                agent_id=agent.id,
                tool=request.call.tool,
                arguments=arguments if arguments is not None else request.current_arguments,
            )
            event = {
                Outcome.STARTED: Event.EXECUTION_STARTED,
                Outcome.SUCCEEDED: Event.EXECUTED,
                Outcome.FAILED: Event.EXECUTION_FAILED,
            }[outcome]
            after = replace(
                request,
                grant_used_at=request.grant_used_at or now,
                outcome=outcome,
                version=request.version + 1,
            )
            envelope = attest(
                after,
                event,
                self.keys,
                at=now,
                detail=dict(detail or {}),
                prev_index=request.last_log_index,
            )
            try:
                return await self.store.commit(
                    Change(request, after, attestation=envelope, event=event)
                )
            except Conflict:
                continue
        raise Conflict("request is changing too fast; try again")
