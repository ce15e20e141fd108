"""Fan-out of a Gate's state changes: cards to approval channels, listeners of new and final
requests, the pager's resolve, and the wake-up of long-polls. Everything runs in background
tasks whose failures are logged and counted and never change a decision.

``Gate`` holds one ``Fanout`` (composition, not inheritance). Who hears what is given once:
at construction, or by the composition root's one ``connect`` call (the channels need the
Gate to exist before they do, so the root builds the Gate first, then connects what every
adapter's ``mount`` returned)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from bot.domain import Request, Tier
from bot.metrics import Metrics
from bot.ports import ApprovalChannel, Notice, Pager
from bot.waiters import Waiters

log = logging.getLogger(__name__)

#: called at once with a request that became final; returns the work to run in the background,
#: or None when there is nothing to do (most auto-tier requests: no task is spawned then)
FinalListener = Callable[[Request], Awaitable[object] | None]
CreatedListener = Callable[[Request], None]


class Fanout:
    """Who hears about what, in this process."""

    def __init__(
        self,
        metrics: Metrics | None = None,
        *,
        channels: Iterable[ApprovalChannel] = (),
        pager: Pager | None = None,
        final_listeners: Iterable[FinalListener] = (),
        created_listeners: Iterable[CreatedListener] = (),
    ) -> None:
        self.metrics = metrics or Metrics()
        self._channels = tuple(channels)
        self._pager = pager
        #: told (synchronously) when a request becomes final; see ``FinalListener``
        self._final_listeners = tuple(final_listeners)
        #: called (synchronously, in this process) for every new pending request
        self._created_listeners = tuple(created_listeners)
        self._connected = False
        self.waiters = Waiters()
        self._tasks: set[asyncio.Task[None]] = set()
        #: True while the store's change feed reports other processes' changes; long-polls
        #: then wait for a wake-up alone instead of re-reading the store every few seconds
        self.feed_live = False
        #: set when the process shuts down: long-polls answer at once (still pending)
        self.draining = False

    def connect(
        self,
        *,
        channels: Iterable[ApprovalChannel] = (),
        pager: Pager | None = None,
        final_listeners: Iterable[FinalListener] = (),
        created_listeners: Iterable[CreatedListener] = (),
    ) -> None:
        """Add what the adapters contribute; the composition root calls this once, before
        serving. Raises ``RuntimeError`` on a second call or a second pager."""
        if self._connected:
            raise RuntimeError("Fanout.connect called twice")
        if pager is not None and self._pager is not None:
            raise RuntimeError("a Fanout has one pager")
        self._connected = True
        self._channels += tuple(channels)
        self._pager = pager or self._pager
        self._final_listeners += tuple(final_listeners)
        self._created_listeners += tuple(created_listeners)

    @property
    def channels(self) -> tuple[ApprovalChannel, ...]:
        return self._channels

    @property
    def pager(self) -> Pager | None:
        return self._pager

    # ------------------------------------------------------------------ long-polls

    def changed_elsewhere(self, request_id: str) -> None:
        """The change feed saw ``request_id`` change (maybe in another process)."""
        self.waiters.wake(request_id)

    def feed_state(self, live: bool) -> None:
        """The change feed came up or went down: every waiter re-reads the store once, so a
        change made while the feed was down is not missed."""
        self.feed_live = live
        self.waiters.wake_all()

    def stop_waiting(self) -> None:
        """Shutting down: every held long-poll returns now with the request as it is."""
        self.draining = True
        self.waiters.wake_all()

    def on_interest(self, wake: Callable[[], None]) -> None:
        """Have ``wake()`` called when a long-poll begins while none waited (the SQLite
        change feed sleeps meanwhile)."""
        self.waiters.on_first_watch = wake

    def has_waiters(self) -> bool:
        """Whether any long-poll waits in this process (safe to call from any thread)."""
        return len(self.waiters) > 0

    # ------------------------------------------------------------------ what the Gate tells

    def created(self, request: Request) -> None:
        """A new pending request was committed."""
        for listener in self._created_listeners:
            listener(request)

    def final(self, request: Request) -> None:
        """``request`` became final: wake its long-polls, tell the listeners, resolve its page."""
        self.waiters.wake(request.id, request)
        self.metrics.count_decision(str(request.status))
        for listener in self._final_listeners:
            work = listener(request)
            if work is not None:
                self.spawn(work, f"final listener for {request.id}")
        if self._pager is not None and request.tier is Tier.CONFIRM:
            self.spawn(self._pager.resolve(request), f"pager resolve for {request.id}")

    def publish(self, notice: Notice, then: Callable[[], Awaitable[object]] | None = None) -> None:
        """Send a notice to every channel in the background. ``then`` runs once every channel
        has had its try (delivered, or failed: a failure is logged and counted); not when the
        deliveries were cancelled (shutting down)."""
        if then is not None:
            self.spawn(self._deliver_all(notice, then), f"{notice.kind} notice deliveries")
            return
        for channel in self._channels:
            self.spawn(self._deliver(channel, notice), f"{channel.platform} delivery")

    async def _deliver_all(self, notice: Notice, then: Callable[[], Awaitable[object]]) -> None:
        await asyncio.gather(*(self._deliver(channel, notice) for channel in self._channels))
        await then()

    async def _deliver(self, channel: ApprovalChannel, notice: Notice) -> None:
        try:
            await channel.deliver(notice)
        except Exception:
            # A channel failure never changes a decision; it is counted and logged, and the
            # escalation ladder still runs (fail closed: nothing is allowed by a failure).
            self.metrics.channel_errors.labels(channel.platform.value).inc()
            log.exception(
                "delivery to %s failed for request %s", channel.platform, notice.request.id
            )

    def spawn(self, coro: Awaitable[Any], what: str) -> None:
        """Run ``coro`` in the background like the fan-out's own work (logged if it fails,
        waited for by ``drain``)."""

        async def run() -> None:
            try:
                await coro
            except Exception:
                log.exception("background task failed: %s", what)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, grace: float = 10.0, *, cancel: bool = False) -> int:
        """Wait up to ``grace`` seconds for the background work, work started meanwhile
        included (a delivery that publishes another). Returns how many tasks still run.

        ``cancel`` (shutting down, before the adapters close their HTTP sessions): cancel what
        still runs after the grace and say so in one warning line, instead of letting each
        task fail later on a closed session with a traceback of its own."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left)
        unfinished = len(self._tasks)
        if cancel and unfinished:
            tasks = set(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=1.0)
            log.warning(
                "shutting down: %d background deliveries (cards, pages, callbacks) still "
                "running after %.0f s were cancelled; what they were sending may show an older "
                "state",
                unfinished,
                grace,
            )
        return unfinished
