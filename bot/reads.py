"""The read side of ``Gate``: the narrow methods channels, the API, the console, the scheduler
and the escalation machine read through, so none of them touches the store, the key ring, the
clock or the policy holder (STYLE: one door), and the agent's long-poll (``wait``).

``Reads`` is a base of ``bot.service.Gate`` and holds no state of its own: ``Gate`` sets the
ports it reads and the fanout whose wake-ups end a long-poll. The one write here is
``record_post`` (where a card copy went): it changes no request. Must not import
``adapters`` or any chat SDK.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.approvals import current_approvals
from bot.caps import AgentCaps
from bot.domain import (
    Agent,
    Delivery,
    LogEntry,
    OwedDelivery,
    PendingTimer,
    Platform,
    Post,
    Request,
    Status,
    Tier,
    Vote,
)
from bot.errors import NotFound
from bot.evidence.keys import KeyRing, PublicKeys
from bot.fanout import Fanout
from bot.metrics import Metrics
from bot.policy.holder import PolicyHolder
from bot.policy.model import Policy
from bot.ports import Clock, Signer, Store


@dataclass(frozen=True, slots=True)
class View:
    """A request as it stands, with its votes and (when asked for a platform) the card
    copies posted there: what a card or a page shows."""

    request: Request
    votes: tuple[Vote, ...]
    posts: tuple[Post, ...] = ()


#: a long-poll's re-read cadence while the store's change feed is down
RESCAN_S = 2.0


class Reads:
    """Everything an adapter may read of the gate's state."""

    store: Store
    policies: PolicyHolder
    keys: KeyRing
    clock: Clock
    fanout: Fanout
    caps: AgentCaps
    metrics: Metrics

    # ------------------------------------------------------------------ requests

    async def get(self, request_id: str, agent: Agent | None = None) -> Request:
        """The request; with ``agent``, only that agent's own. Raises ``NotFound``."""
        return _visible(request_id, await self.store.get_request(request_id), agent)

    async def find(self, agent: Agent, idempotency_key: str) -> Request | None:
        """The agent's own request submitted with ``idempotency_key``, if any."""
        return await self.store.request_by_idempotency_key(agent.id, idempotency_key)

    # ------------------------------------------------------------------ long-polls

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
                # a decision made in this process comes with the wake-up: no re-read
                final = watch.value
                if isinstance(final, Request) and final.status.final:
                    request = final
                else:
                    request = await self.get(request_id, agent)
        return request

    async def view(
        self, request_id: str, platform: Platform | None = None, agent: Agent | None = None
    ) -> View:
        """The request with its votes, and its card copies on ``platform`` (none without
        one), in one read; with ``agent``, only that agent's own. Raises ``NotFound``."""
        request, votes, posts = await self.store.request_view(request_id, platform)
        return View(_visible(request_id, request, agent), tuple(votes), tuple(posts))

    async def votes(self, request_id: str) -> list[Vote]:
        """Every vote on the request, oldest first."""
        return await self.store.votes(request_id)

    async def received(self, request: Request) -> int:
        """How many people's approvals of the arguments now up for approval count (0 for a
        request that needs none)."""
        if request.tier is not Tier.CONFIRM:
            return 0
        votes = await self.store.votes(request.id)
        return len({v.approver.key for v in current_approvals(request, votes)})

    async def list_requests(
        self,
        *,
        status: Status | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
    ) -> list[Request]:
        """Requests, newest first."""
        return await self.store.list_requests(status=status, since=since, until=until, limit=limit)

    async def pending_timers(
        self, *, since: datetime | None, after: tuple[datetime, str] | None, limit: int
    ) -> list[PendingTimer]:
        """The schedules of pending requests, oldest first (``Store.pending_timers``)."""
        return await self.store.pending_timers(since=since, after=after, limit=limit)

    async def agent(self, agent_id: str) -> Agent | None:
        return await self.store.get_agent(agent_id)

    # ------------------------------------------------------------------ card copies

    async def posts(self, request_id: str, platform: Platform) -> list[Post]:
        """Where cards for the request went on ``platform``."""
        return await self.store.posts(request_id, platform)

    async def record_post(self, post: Post) -> None:
        """Remember where a card copy went, so every copy is updated later."""
        await self.store.add_post(post)

    # ------------------------------------------------------------------ deliveries owed

    async def deliveries_due(self, kind: Delivery, limit: int = 100) -> list[OwedDelivery]:
        """Deliveries of ``kind`` owed whose holder's time ran out (its process stopped),
        oldest first."""
        return await self.store.deliveries_due(kind, self.now(), limit)

    async def hold_delivery(
        self, owed: OwedDelivery, hold: timedelta, *, attempts: int, take: bool = False
    ) -> OwedDelivery | None:
        """Hold the delivery ``hold`` from now with ``attempts`` made (``take``: take it over
        from a holder whose time ran out). None when another process has it now, or it was
        settled."""
        now = self.now()
        return await self.store.hold_delivery(
            owed, now + hold, attempts=attempts, taking=now if take else None
        )

    async def take_due(
        self, kind: Delivery, hold: timedelta, *, count_take: bool = False, limit: int = 100
    ) -> AsyncIterator[tuple[OwedDelivery, Request | None]]:
        """Take over, one at a time, the deliveries of ``kind`` whose holder's time ran out:
        each taken (compare-and-set) is held ``hold`` from now and yielded with its request
        (None when gone); one another process took first is skipped. ``count_take``: the
        take counts as an attempt."""
        for owed in await self.deliveries_due(kind, limit):
            attempts = owed.attempts + 1 if count_take else owed.attempts
            held = await self.hold_delivery(owed, hold, attempts=attempts, take=True)
            if held is not None:
                yield held, await self.store.get_request(owed.request_id)

    async def settle_delivery(self, request_id: str, kind: Delivery) -> None:
        """The delivery was made or given up."""
        await self.store.settle_delivery(request_id, kind)

    # ------------------------------------------------------------------ the log

    async def log_entries(self, start: int, stop: int) -> list[LogEntry]:
        return await self.store.log_entries(start, stop)

    async def log_entries_for(self, request_id: str) -> list[LogEntry]:
        return await self.store.log_entries_for(request_id)

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return await self.store.inclusion_proof(index, size)

    def public_keys(self) -> PublicKeys:
        """The published signing keys (what a verifier checks the log against)."""
        return self.keys.public()

    @property
    def signer(self) -> Signer:
        """The signing key, for what signoff sends out signed (callbacks, e-mail links)."""
        return self.keys

    @property
    def verifier(self) -> PublicKeys:
        """The published keys as they are now, to check what signoff signed earlier."""
        return self.keys

    # ------------------------------------------------------------------ time and policy

    def now(self) -> datetime:
        return self.clock.now()

    @property
    def policy(self) -> Policy:
        """The policy in force."""
        return self.policies.current


def _visible(request_id: str, request: Request | None, agent: Agent | None) -> Request:
    """``request`` as read; ``NotFound`` when there is none or it is not ``agent``'s."""
    if request is None or (agent is not None and request.agent_id != agent.id):
        raise NotFound(f"no request {request_id!r}")
    return request


__all__ = ["RESCAN_S", "Reads", "View"]
