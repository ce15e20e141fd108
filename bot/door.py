"""The one door for state changes: ``Door._transition`` runs a step (``bot.transition``) on
the request as stored and owns everything around it: the read, the retry when another writer
got there first, the attestation, the compare-and-set commit, and the publishing of what
changed (notices to the channels, final requests to the listeners and long-polls).

``Door`` is a base of ``bot.service.Gate`` (which sets the ports and the fanout); the use
cases there, and the escalation step machine through ``escalate``, change requests only
through it. Must not import ``adapters`` or any chat SDK.
"""

from __future__ import annotations

from typing import overload

from bot.domain import Agent, Request
from bot.errors import Conflict
from bot.ports import Notice
from bot.reads import Reads
from bot.transition import CAS_RETRIES, MaybeStep, Step, Transition, attempt, attested


class Door(Reads):
    """The state-changing half of ``Gate``'s base: ``_transition`` and what it publishes."""

    async def escalate(self, request_id: str, claim: MaybeStep) -> Request | None:
        """Claim the request's next escalation step (``bot.escalation`` builds ``claim``:
        an ``escalated`` transition, or ``None`` when no step is due). Returns the request
        as committed, or ``None``. Raises ``NotFound`` and ``Conflict`` as ``_transition``."""
        return await self._transition(request_id, claim)

    # ------------------------------------------------------------------ the one door

    @overload
    async def _transition(
        self, request_id: str, step: Step, *, agent: Agent | None = None, votes: bool = False
    ) -> Request: ...
    @overload
    async def _transition(
        self, request_id: str, step: MaybeStep, *, agent: Agent | None = None, votes: bool = False
    ) -> Request | None: ...
    async def _transition(
        self, request_id: str, step: MaybeStep, *, agent: Agent | None = None, votes: bool = False
    ) -> Request | None:
        """Run ``step`` on the request as stored and commit what it returns, compare-and-set,
        with its attestation; then publish its notices and tell the final listeners. A lost
        race re-reads and runs the step again (it re-checks: final now? voted already?).
        ``votes``: the step is given the request's votes. Returns the committed request, or
        ``None`` when the step had nothing to do. Raises ``NotFound`` (no such request, or
        not ``agent``'s), what the step raises, and ``Conflict`` when the request changes
        faster than ``CAS_RETRIES`` attempts."""
        for _ in range(CAS_RETRIES):
            if votes:
                view = await self.view(request_id, agent=agent)
                request, seen = view.request, view.votes
            else:
                request, seen = await self.get(request_id, agent), ()
            now = self.clock.now()
            change = step(request, seen, now)
            if change is None:
                return None
            stored = await attempt(self.store.commit(attested(request, change, now, self.keys)))
            if isinstance(stored, Conflict):
                continue  # lost a race: re-read and re-check
            await self._announce(request, stored, change)
            return stored
        raise Conflict("request is changing too fast; try again")

    async def _announce(self, before: Request, stored: Request, change: Transition) -> None:
        """Publish a committed change's notices; a request that just became final wakes its
        long-polls and final listeners."""
        if change.notices:
            votes = change.votes
            if votes is None:
                votes = tuple(await self.store.votes(stored.id))
            at = stored.last_log_index
            for kind, groups in change.notices:
                self.fanout.publish(
                    Notice(kind, stored, votes, groups or stored.approver_groups, at)
                )
        if stored.status.final and not before.status.final:
            self.fanout.final(stored)


__all__ = ["Door"]
