"""Wake-ups for long-polls: a decision wakes every waiter on that request at once.

Waiters never re-poll the database in the common case (SPEC §9: decision → long-poll return
p50 ≤ 10 ms). A decision made in this process wakes them directly; one made by another
process sharing the database wakes them through the store's change feed
(``bot.store.changes``). Only while that feed is down do callers fall back to re-reading the
store on a slow cadence.

A caller registers (``watch``) *before* it reads the request, so a change committed after
that read always finds the registration and no wake-up falls between the read and the wait.
A wake-up may carry the request as committed (``wake(id, value)``: a decision made in this
process), which spares the woken caller its re-read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator


class _Wakeup(asyncio.Event):
    """An event that carries what its ``wake`` was given (``None``: only that it changed)."""

    value: object = None


class Watch:
    """One caller's registration on one request (see ``Waiters.watch``)."""

    __slots__ = ("_event", "_request_id", "_waiters", "value")

    def __init__(self, waiters: Waiters, request_id: str) -> None:
        self._waiters = waiters
        self._request_id = request_id
        self._event = waiters._arm(request_id)
        #: what the last wake-up carried (``None`` when it carried nothing, or timed out)
        self.value: object = None

    async def wait(self, seconds: float) -> bool:
        """Wait until the request is woken or ``seconds`` pass; True when woken. A wake-up
        that came before this call (since the last one) returns at once."""
        self.value = None
        try:
            async with asyncio.timeout(seconds):
                await self._event.wait()
            return True
        except TimeoutError:
            return False
        finally:
            if self._event.is_set():  # re-arm before the caller re-reads the store
                self.value = self._event.value
                self._event = self._waiters._arm(self._request_id)


class Waiters:
    """Per-request ``asyncio.Event``s created on demand and dropped when nobody waits."""

    def __init__(self) -> None:
        self._events: dict[str, _Wakeup] = {}
        self._counts: defaultdict[str, int] = defaultdict(int)
        #: called when a watch begins while none was held (the change feed's nudge)
        self.on_first_watch: Callable[[], None] | None = None

    def _arm(self, request_id: str) -> _Wakeup:
        event = self._events.get(request_id)
        if event is None:
            event = self._events[request_id] = _Wakeup()
        return event

    @contextlib.contextmanager
    def watch(self, request_id: str) -> Iterator[Watch]:
        """Register interest in ``request_id`` for the ``with`` block."""
        first = not self._counts
        self._counts[request_id] += 1
        if first and self.on_first_watch is not None:
            self.on_first_watch()
        try:
            yield Watch(self, request_id)
        finally:
            self._counts[request_id] -= 1
            if self._counts[request_id] <= 0:
                self._counts.pop(request_id, None)
                self._events.pop(request_id, None)

    async def wait(self, request_id: str, seconds: float) -> bool:
        """Wait until ``wake(request_id)`` or ``seconds`` pass; True when woken."""
        with self.watch(request_id) as watch:
            return await watch.wait(seconds)

    def wake(self, request_id: str, value: object = None) -> None:
        """Wake the request's waiters; ``value`` (the request as committed) goes with it."""
        event = self._events.pop(request_id, None)
        if event is not None:
            event.value = value
            event.set()

    def wake_all(self) -> None:
        """Wake every waiter (after a gap in the change feed: each re-reads the store)."""
        events, self._events = self._events, {}
        for event in events.values():
            event.set()

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._events

    def __len__(self) -> int:
        return len(self._counts)
