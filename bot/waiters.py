"""In-process wake-ups for long-polls: a decision wakes every waiter on that request at once.

Waiters never re-poll the database in the common case (SPEC §9: decision → long-poll return
p50 ≤ 10 ms). Callers still re-read the store on a slow cadence so that a decision made by
another process sharing the database is noticed too.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict


class Waiters:
    """Per-request ``asyncio.Event``s created on demand and dropped when nobody waits."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._counts: defaultdict[str, int] = defaultdict(int)

    async def wait(self, request_id: str, seconds: float) -> bool:
        """Wait until ``wake(request_id)`` or ``seconds`` pass; True when woken."""
        event = self._events.get(request_id)
        if event is None:
            event = self._events[request_id] = asyncio.Event()
        self._counts[request_id] += 1
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._counts[request_id] -= 1
            if self._counts[request_id] <= 0:
                self._counts.pop(request_id, None)
                if self._events.get(request_id) is event:
                    del self._events[request_id]

    def wake(self, request_id: str) -> None:
        event = self._events.pop(request_id, None)
        if event is not None:
            event.set()

    def __len__(self) -> int:
        return len(self._events)
