"""Escalation timers: APScheduler 3.x (``AsyncIOScheduler``) driving ``bot.escalation``.

The store is the source of truth; the timers are a cache of it. At start the schedule is
rebuilt from every pending request (a narrow, paged bulk read): one timer per request, for
its *next* step. A step that fell due while signoff was down gets a past run time and runs at
once (``misfire_grace_time=None``), oldest first. When a timer fires, ``run_due_steps``
claims and runs whatever is due and the timer is replaced by one for the following step.
Deciding, cancelling or suspending removes the timer (a final listener); a timer that still
fires re-reads the request and does nothing.

Every step is fired by an APScheduler job (job id = request id, ``replace_existing``). Steps
further away than ``horizon`` wait in a heap and become jobs once they come within it (a
once-a-second promotion job): an APScheduler job costs ~1 KB and ~25 µs to add, a heap entry
a tenth of both, which is what lets 100,000 pending requests come back within seconds of a
restart. A step never waits in the heap past ``horizon - promote_every`` before its time.

Several processes may share one database: each schedules every pending request and the
compare-and-set claim in ``bot.escalation`` makes each step run once. A sweep every
``sweep_every`` seconds picks up requests created since the last sweep (minus
``sweep_margin`` for clock skew and slow commits) — by this process or another.

A failing step (store unreachable, a bug) is logged and retried ``retry_after`` seconds
later, so the final deny still comes once the store is back; it never stops the scheduler.
This module must not import ``adapters`` or any chat SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import inspect
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.domain import Request, Tier
from bot.errors import StoreError
from bot.escalation import StepRun, next_due, pending_due, run_due_steps, settle_pages
from bot.service import Gate

log = logging.getLogger(__name__)

PROMOTE_JOB = "signoff-escalation-horizon"
Observer = Callable[[str, StepRun], None]


class Scheduler:
    """One per process: owns the APScheduler instance and one timer per pending request."""

    def __init__(
        self,
        gate: Gate,
        *,
        horizon: timedelta = timedelta(seconds=60),
        promote_every: float = 1.0,
        sweep_every: float = 1.0,
        sweep_margin: timedelta = timedelta(seconds=10),
        page_size: int = 5000,
        concurrency: int = 16,
        retry_after: float = 5.0,
        observer: Observer | None = None,
    ) -> None:
        self.gate = gate
        self.horizon = horizon
        self.promote_every = promote_every
        self.sweep_every = sweep_every
        self.sweep_margin = sweep_margin
        self.page_size = page_size
        self.retry_after = retry_after
        self.observer = observer
        self._limit = asyncio.Semaphore(concurrency)
        self._running: set[str] = set()
        self._quiet = asyncio.Event()  # set while no step runs
        self._quiet.set()
        self._swept_at: datetime | None = None
        # steps beyond the horizon: request id -> due, and a heap of (due, id) to promote
        # them in time order (entries whose due no longer matches are stale and skipped)
        self._later: dict[str, datetime] = {}
        self._heap: list[tuple[datetime, str]] = []
        self._aps = AsyncIOScheduler(timezone=UTC)
        # APScheduler logs two INFO lines per job run and one per job added: noise with
        # 100,000 timers. Our own log says which steps ran.
        aps_log = logging.getLogger("apscheduler")
        if aps_log.level == logging.NOTSET:
            aps_log.setLevel(logging.WARNING)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> int:
        """Rebuild every timer from the store and start firing. Returns the number of
        requests scheduled. Raises ``StoreError``."""
        if not self._aps.running:
            self._aps.start(paused=True)
        try:
            count = await self.rebuild()
        except BaseException:
            self.shutdown()
            raise
        self._aps.add_job(
            _promote,
            trigger=IntervalTrigger(seconds=self.promote_every, timezone=UTC),
            args=(self,),
            id=PROMOTE_JOB,
            name="escalation horizon",
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
        self._aps.resume()
        return count

    async def run(self) -> None:
        """Background task: start (retrying while the store is unreachable), then sweep
        until cancelled."""
        while True:
            try:
                count = await self.start()
            except StoreError as exc:
                log.warning("escalation timers not rebuilt (%s); retrying", exc.diagnostics())
                await asyncio.sleep(self.retry_after)
                continue
            break
        log.info("escalation timers rebuilt for %d pending requests", count)
        try:
            await self.sweep_forever()
        finally:
            self.shutdown()
            # let steps already running finish, and pages on their way reach the pager
            # (bounded): the store closes right after
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._quiet.wait()
                    await settle_pages()

    async def sweep_forever(self) -> None:
        """Sweep every ``sweep_every`` seconds until cancelled; a failed sweep is logged."""
        while True:
            await asyncio.sleep(self.sweep_every)
            try:
                await self.sweep()
            except Exception:
                log.exception("escalation sweep failed; trying again")

    def shutdown(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)

    # ------------------------------------------------------------------ the schedule

    async def rebuild(self) -> int:
        """Schedule the next step of every pending request."""
        started = self.gate.now()
        # 100,000 timers are a few hundred thousand long-lived objects: without the cyclic
        # collector's full passes over them while they are created, the rebuild takes half
        # the time. Nothing here makes reference cycles.
        collecting = gc.isenabled()
        gc.disable()
        try:
            entries = await self._pending(since=None)
            # In run-time order: jobs append to the job store's sorted list (O(1) each,
            # not O(n)), and the heap of later steps is already a heap.
            entries.sort()
            for due, request_id in entries:
                self.schedule(request_id, due)
        finally:
            if collecting:
                gc.enable()
        self._swept_at = started
        return len(entries)

    async def sweep(self) -> int:
        """Schedule pending requests created since the last sweep that have no timer here
        yet. Returns how many."""
        started = self.gate.now()
        since = (self._swept_at or started) - self.sweep_margin
        added = 0
        for due, request_id in sorted(await self._pending(since=since)):
            if request_id in self._running or self.due(request_id) is not None:
                continue
            self.schedule(request_id, due)
            added += 1
        self._swept_at = started
        return added

    async def _pending(self, since: datetime | None) -> list[tuple[datetime, str]]:
        """(due, request id) of the next step of every pending request created since
        ``since``."""
        entries: list[tuple[datetime, str]] = []
        after: tuple[datetime, str] | None = None
        while True:  # a narrow keyset-paged bulk read
            timers = await self.gate.pending_timers(since=since, after=after, limit=self.page_size)
            for timer in timers:
                due = pending_due(timer)
                if due is not None:
                    entries.append((due, timer.id))
            if len(timers) < self.page_size:
                return entries
            after = (timers[-1].created_at, timers[-1].id)

    def schedule(self, request_id: str, due: datetime) -> None:
        """(Re)place the request's timer so it fires at ``due`` (at once if past)."""
        if due > _now() + self.horizon:
            with contextlib.suppress(JobLookupError):
                self._aps.remove_job(request_id)
            self._later[request_id] = due
            heapq.heappush(self._heap, (due, request_id))
            return
        self._later.pop(request_id, None)
        self._aps.add_job(
            _fire,
            trigger=DateTrigger(run_date=due, timezone=UTC),
            args=(self, request_id),
            id=request_id,
            name="escalation",
            replace_existing=True,
            misfire_grace_time=None,
            coalesce=True,
            max_instances=1000,
        )

    def promote(self) -> int:
        """Turn the later steps that came within the horizon into jobs. Returns how many."""
        limit = _now() + self.horizon
        heap, moved = self._heap, 0
        while heap and heap[0][0] <= limit:
            due, request_id = heapq.heappop(heap)
            if self._later.get(request_id) == due:
                self.schedule(request_id, due)
                moved += 1
        return moved

    def forget(self, request_id: str) -> None:
        """Remove the request's timer, if any."""
        self._later.pop(request_id, None)
        with contextlib.suppress(JobLookupError):
            self._aps.remove_job(request_id)

    def on_created(self, request: Request) -> None:
        """A created listener (``bot.fanout``): time a new request at once instead of waiting
        for the next sweep (which still catches requests created by other processes). A
        process that does not lead (its scheduler is not running) leaves it to the leader."""
        if not self._aps.running:
            return
        due = next_due(request)
        if due is not None:
            self.schedule(request.id, due)

    def on_final(self, request: Request) -> None:
        """A final listener (``bot.fanout``): a decided, cancelled or expired request needs no
        more steps. Only confirm-tier requests ever had a timer."""
        if request.tier is Tier.CONFIRM:
            self.forget(request.id)

    def due(self, request_id: str) -> datetime | None:
        """When the request's timer fires here (``None`` without one)."""
        later = self._later.get(request_id)
        if later is not None:
            return later
        job = self._aps.get_job(request_id)
        if job is None:
            return None
        # a job added before the scheduler started has no next run time yet
        when = getattr(job, "next_run_time", None) or getattr(job.trigger, "run_date", None)
        return when.astimezone(UTC) if isinstance(when, datetime) else None

    def count(self) -> int:
        """Escalation timers currently held (jobs and later steps)."""
        jobs = sum(1 for job in self._aps.get_jobs() if job.id != PROMOTE_JOB)
        return jobs + len(self._later)

    # ------------------------------------------------------------------ firing

    async def fire(self, request_id: str) -> None:
        """Run what is due for the request and schedule its next step. Never raises."""
        self._running.add(request_id)
        self._quiet.clear()
        try:
            async with self._limit:
                progress = await run_due_steps(self.gate, request_id)
        except Exception:
            log.exception(
                "escalation of request %s failed; retrying in %ss", request_id, self.retry_after
            )
            self.schedule(request_id, self.gate.now() + timedelta(seconds=self.retry_after))
            return
        finally:
            self._running.discard(request_id)
            if not self._running:
                self._quiet.set()
        if progress.next_due is not None:
            self.schedule(request_id, progress.next_due)
        else:
            self.forget(request_id)
        if self.observer is not None:
            for run in progress.ran:
                self.observer(request_id, run)


def _now() -> datetime:
    # APScheduler's own time base (the wall clock), not the gate's injectable clock.
    return datetime.now(UTC)


async def _fire(scheduler: Scheduler, request_id: str) -> None:
    await scheduler.fire(request_id)


async def _promote(scheduler: Scheduler) -> None:
    scheduler.promote()


# APScheduler inspects the job function's signature on every ``add_job``; a precomputed
# ``__signature__`` makes that a lookup (it is ~40% of the cost of adding a job).
_fire.__signature__ = inspect.signature(_fire)  # type: ignore[attr-defined]

__all__ = ["PROMOTE_JOB", "Observer", "Scheduler"]
