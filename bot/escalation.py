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

This module knows no timers: ``run_due_steps`` runs whatever is due by ``gate.clock`` and
says when the next step falls due; ``bot.scheduler`` turns that into APScheduler jobs.
It must not import ``adapters`` or any chat SDK.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from bot.domain import Change, EscalationStep, Event, Request, Status
from bot.errors import Conflict
from bot.evidence.statement import attest
from bot.ports import Notice, NoticeKind
from bot.service import Gate

log = logging.getLogger(__name__)

_CAS_RETRIES = 8

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
    """Run every step of the request that is due by ``gate.clock``, in order, claiming each
    with a compare-and-set first. Steps that fell due while signoff was down all run now.

    Raises ``StoreError`` when the store is unreachable (nothing was claimed then, so a
    retry runs the step) and ``Conflict`` when the request changes faster than it can be
    claimed. A request that no longer exists or is final yields no steps.
    """
    ran: list[StepRun] = []
    conflicts = 0
    while True:
        request = await gate.store.get_request(request_id)
        if request is None or request.status is not Status.PENDING:
            return Progress(tuple(ran), None)
        steps = ladder(request)
        index = request.steps_done
        now = gate.clock.now()
        if index >= len(steps):
            if not steps and request.deadline is None:
                return Progress(tuple(ran), None)  # no SLA at all: stays pending
            step = EscalationStep(after=now - request.created_at, deny=True)
        else:
            step = steps[index]
        due = due_at(request, step)
        if now < due:
            return Progress(tuple(ran), due)
        if step.deny:
            expired = await gate.expire(request_id)
            if expired is not None:
                ran.append(StepRun(index, due, now, True))
                log.info("request %s expired (step %d, due %s)", request_id, index, due)
            return Progress(tuple(ran), None)
        claimed = await _claim(gate, request, index, step, now)
        if claimed is None:
            conflicts += 1
            if conflicts > _CAS_RETRIES:
                raise Conflict(f"request {request_id!r} is changing too fast to escalate")
            continue  # lost the race: re-read (final now? step already run elsewhere?)
        ran.append(StepRun(index, due, now, False))
        await _act(gate, claimed, index, step, added=claimed.extra_groups != request.extra_groups)


async def escalate_early(gate: Gate, request_id: str) -> StepRun | None:
    """Run the request's next escalation step now, ahead of its time (a card could not be
    delivered, so more people should hear of it sooner). The final deny step is never
    brought forward: it keeps its time. Returns the step run, or ``None`` when there was
    nothing to bring forward (final request, only the deny left, or a lost race)."""
    for _ in range(_CAS_RETRIES):
        request = await gate.store.get_request(request_id)
        if request is None or request.status is not Status.PENDING:
            return None
        steps = ladder(request)
        index = request.steps_done
        if index >= len(steps) or steps[index].deny:
            return None
        step = steps[index]
        now = gate.clock.now()
        claimed = await _claim(gate, request, index, step, now)
        if claimed is None:
            continue
        await _act(gate, claimed, index, step, added=claimed.extra_groups != request.extra_groups)
        log.info(
            "request %s escalated early (step %d): a card was undeliverable", request_id, index
        )
        return StepRun(index, due_at(request, step), now, False)
    return None


async def _claim(
    gate: Gate, request: Request, index: int, step: EscalationStep, now: datetime
) -> Request | None:
    """Commit ``steps_done = index + 1`` (and the ``to:`` group) with an ``escalated``
    attestation; ``None`` when another writer changed the request first."""
    extra = request.extra_groups
    if step.to is not None and step.to not in request.approver_groups:
        extra = (*extra, step.to)
    after = replace(request, steps_done=index + 1, extra_groups=extra, version=request.version + 1)
    detail: dict[str, Any] = {
        "step": index,
        "after_seconds": step.after.total_seconds(),
        "remind": step.remind,
        "to": step.to,
        "page": step.page,
    }
    envelope = attest(
        after,
        Event.ESCALATED,
        gate.keys,
        at=now,
        detail=detail,
        prev_index=request.last_log_index,
    )
    try:
        return await gate.store.commit(
            Change(request, after, attestation=envelope, event=Event.ESCALATED)
        )
    except Conflict:
        return None


async def _act(
    gate: Gate, request: Request, index: int, step: EscalationStep, *, added: bool
) -> None:
    """Tell the channels (and the pager) about a step this process claimed."""
    votes = tuple(await gate.store.votes(request.id))
    at = request.last_log_index
    what = []
    if step.remind:
        what.append("remind")
        gate.publish(Notice(NoticeKind.REMINDER, request, votes, request.approver_groups, at))
    if step.to is not None and added:
        what.append(f"to {step.to}")
        gate.publish(Notice(NoticeKind.ESCALATED, request, votes, (step.to,), at))
    if step.page:
        what.append("page")
        gate.publish(Notice(NoticeKind.PAGE, request, votes, request.approver_groups, at))
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
