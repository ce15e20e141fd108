"""The escalation step machine (SPEC §5 ``sla``/``escalation``, §8 Escalation).

Owns what happens to a pending confirm-tier request as time passes: its rule's ladder of
``EscalationStep``s runs in order, each at ``created_at + step.after``: ``remind`` (a REMINDER
notice to every card), ``to: GROUP`` (the group joins the approvers and gets cards: an
ESCALATED notice), ``page: true`` (a PAGE notice for the escalation channel and a pager
``trigger``), and the final deny (``Gate.expire``: status ``expired``). Nothing here ever
allows.

Every non-final step is *claimed* before it acts: a compare-and-set commit that bumps
``Request.steps_done`` together with a signed ``escalated`` attestation. A lost race
(``Conflict``: a decision, or another signoff process sharing the database, got there first)
re-reads the request and re-evaluates, so each step runs at most once across all processes;
only the winner publishes notices and pages. The final deny is claimed by ``Gate.expire``'s
own compare-and-set (one final state only).

This module knows no timers: ``run_due_steps`` runs whatever is due by the gate's clock and
says when the next step falls due; ``bot.scheduler`` turns that into APScheduler jobs.
It must not import ``adapters`` or any chat SDK.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.domain import EscalationStep, Event, Request, Status, Vote
from bot.errors import NotFound
from bot.ports import NoticeKind
from bot.service import Gate
from bot.transition import Transition

log = logging.getLogger(__name__)

# Pager calls retry with back-off for seconds; they run beside the ladder so a slow or
# failing pager never delays the next step (above all, never the final deny).
_paging: set[asyncio.Task[None]] = set()


@dataclass(frozen=True, slots=True)
class StepRun:
    """One step this process claimed and ran: its index, when it was due, when it ran."""

    index: int
    due: datetime
    at: datetime
    deny: bool


@dataclass(frozen=True, slots=True)
class Progress:
    """What ``run_due_steps`` did: the steps it ran, in order, and when the next step is due
    (``None`` once the request is final)."""

    ran: tuple[StepRun, ...]
    next_due: datetime | None


class Timed(Protocol):
    """What a schedule needs of a request (a ``Request``, or the store's bulk
    ``PendingTimer``)."""

    @property
    def created_at(self) -> datetime: ...
    @property
    def deadline(self) -> datetime | None: ...
    @property
    def escalation(self) -> tuple[EscalationStep, ...]: ...
    @property
    def steps_done(self) -> int: ...


def ladder(request: Timed) -> tuple[EscalationStep, ...]:
    """The request's steps, always ending in a deny (fail closed): the policy loader appends
    one at the SLA; a request stored without steps but with a deadline denies there."""
    steps = request.escalation
    if steps and steps[-1].deny:
        return steps
    if request.deadline is not None:
        return (*steps, EscalationStep(after=request.deadline - request.created_at, deny=True))
    return steps


def due_at(request: Timed, step: EscalationStep) -> datetime:
    """When ``step`` of ``request`` falls due (the deny step honours ``deadline``)."""
    due = request.created_at + step.after
    if step.deny and request.deadline is not None:
        return min(due, request.deadline)
    return due


def next_due(request: Request) -> datetime | None:
    """When the request's next step falls due; ``None`` when final or nothing is left."""
    if request.status.final:
        return None
    return pending_due(request)


def pending_due(request: Timed) -> datetime | None:
    """``next_due`` of a request known to be pending."""
    steps = ladder(request)
    if request.steps_done < len(steps):
        return due_at(request, steps[request.steps_done])
    if steps or request.deadline is not None:
        # every step ran but the deny did not take (cannot happen): deny now, fail closed
        return request.created_at
    return None


async def run_due_steps(gate: Gate, request_id: str) -> Progress:
    """Run every step of the request that is due by the gate's clock, in order, claiming each
    with a compare-and-set first. Steps that fell due while signoff was down all run now.

    Raises ``StoreError`` when the store is unreachable (nothing was claimed then, so a
    retry runs the step) and ``Conflict`` when the request changes faster than it can be
    claimed. A request that no longer exists or is final yields no steps.
    """
    ran: list[StepRun] = []
    while True:
        plan = _Plan()
        try:
            claimed = await gate.escalate(request_id, plan.claim)
        except NotFound:
            return Progress(tuple(ran), None)
        if plan.deny:  # the final deny is ``Gate.expire``'s own compare-and-set
            expired = await gate.expire(request_id)
            if expired is not None:
                ran.append(StepRun(plan.index, plan.due, plan.now, True))
                log.info("request %s expired (step %d, due %s)", request_id, plan.index, plan.due)
            return Progress(tuple(ran), None)
        if claimed is None:
            return Progress(tuple(ran), plan.next_due)
        ran.append(StepRun(plan.index, plan.due, plan.now, False))
        _act(gate, claimed, plan.index, plan.step, added=plan.added)


async def escalate_early(gate: Gate, request_id: str) -> StepRun | None:
    """Run the request's next escalation step now, ahead of its time (a card could not be
    delivered, so more people should hear of it sooner). The final deny step is never
    brought forward: it keeps its time. Returns the step run, or ``None`` when there was
    nothing to bring forward (no such or a final request, only the deny left). Raises
    ``Conflict`` when the request changes faster than the step can be claimed."""
    plan = _Plan(early=True)
    try:
        claimed = await gate.escalate(request_id, plan.claim)
    except NotFound:
        return None
    if claimed is None:
        return None
    _act(gate, claimed, plan.index, plan.step, added=plan.added)
    log.info(
        "request %s escalated early (step %d): a card was undeliverable", request_id, plan.index
    )
    return StepRun(plan.index, plan.due, plan.now, False)


@dataclass(slots=True)
class _Plan:
    """The claim of the request's next step, as a ``MaybeStep`` for ``Gate.escalate``, and
    what it found on its last run: the step it claimed (or the deny it left to
    ``Gate.expire``), or when the next step falls due. ``early``: claim a step before its
    time (never the deny)."""

    early: bool = False
    index: int = 0
    step: EscalationStep = field(default_factory=lambda: EscalationStep(after=timedelta(0)))
    due: datetime = datetime.min
    now: datetime = datetime.min
    added: bool = False
    deny: bool = False
    next_due: datetime | None = None

    def claim(self, request: Request, votes: Sequence[Vote], now: datetime) -> Transition | None:
        """Commit ``steps_done = index + 1`` (and the ``to:`` group) with an ``escalated``
        attestation when the next step is due; ``None`` (nothing claimed) otherwise."""
        del votes
        self.deny, self.next_due, self.now = False, None, now
        if request.status is not Status.PENDING:
            return None
        steps = ladder(request)
        index = request.steps_done
        if index >= len(steps):
            if self.early or (not steps and request.deadline is None):
                return None  # no SLA at all: stays pending
            step = EscalationStep(after=now - request.created_at, deny=True)
        else:
            step = steps[index]
        self.index, self.step, self.due = index, step, due_at(request, step)
        if step.deny:
            self.deny = not self.early and now >= self.due
            self.next_due = None if self.deny else self.due
            return None
        if now < self.due and not self.early:
            self.next_due = self.due
            return None
        extra = request.extra_groups
        self.added = step.to is not None and step.to not in request.approver_groups
        if self.added and step.to is not None:
            extra = (*extra, step.to)
        detail: dict[str, Any] = {
            "step": index,
            "after_seconds": step.after.total_seconds(),
            "remind": step.remind,
            "to": step.to,
            "page": step.page,
        }
        notices: list[tuple[NoticeKind, tuple[str, ...]]] = []
        if step.remind:
            notices.append((NoticeKind.REMINDER, ()))
        if step.to is not None and self.added:
            notices.append((NoticeKind.ESCALATED, (step.to,)))
        if step.page:
            notices.append((NoticeKind.PAGE, ()))
        after = replace(
            request, steps_done=index + 1, extra_groups=extra, version=request.version + 1
        )
        return Transition(after, Event.ESCALATED, detail=detail, notices=tuple(notices))


def _act(gate: Gate, request: Request, index: int, step: EscalationStep, *, added: bool) -> None:
    """Page for a step this process claimed (its notices went out with the claim)."""
    what = []
    if step.remind:
        what.append("remind")
    if step.to is not None and added:
        what.append(f"to {step.to}")
    if step.page:
        what.append("page")
        if gate.fanout.pager is not None:
            task = asyncio.get_running_loop().create_task(_page(gate, request))
            _paging.add(task)
            task.add_done_callback(_paging.discard)
    log.info("request %s escalation step %d ran: %s", request.id, index, ", ".join(what) or "-")


def page_summary(request: Request) -> str:
    """One line for the pager: tool, agent, rule, deadline; never the tool arguments."""
    rule = request.policy.rule or "default"
    deadline = request.deadline.strftime("%Y-%m-%d %H:%M:%SZ") if request.deadline else "none"
    return (
        f"signoff: {request.call.tool} by agent {request.agent_id} awaits approval "
        f"(rule {rule}; denied at {deadline})"
    )[:1024]


async def _page(gate: Gate, request: Request) -> None:
    pager = gate.fanout.pager
    if pager is None:
        return
    try:
        await pager.trigger(request, page_summary(request))
    except Exception:
        # A failed page is counted and logged; the chat page already went out and the
        # ladder (including the final deny) goes on regardless.
        gate.metrics.pages.labels("failed").inc()
        log.exception("paging failed for request %s", request.id)
    else:
        gate.metrics.pages.labels("sent").inc()


async def settle_pages() -> None:
    """Wait for pager calls still in flight (graceful shutdown, tests; bound it with
    ``asyncio.timeout``)."""
    if _paging:
        await asyncio.wait(set(_paging))


__all__ = [
    "Progress",
    "StepRun",
    "Timed",
    "due_at",
    "ladder",
    "next_due",
    "page_summary",
    "pending_due",
    "run_due_steps",
    "settle_pages",
]
