"""Per-key ``asyncio`` locks: how a channel keeps its cards true to each request.

Notices reach a channel in background tasks and may run out of order, so a channel renders
every change from the request as the gate holds it *now*, re-read under that request's lock:
a late VOTED never puts buttons back on a decided card, and a card posted after the decision
is posted final. Slack and Teams both hold ``KeyedLocks`` by request id. Must not import
``adapters`` or any chat SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class KeyedLocks:
    """One ``asyncio.Lock`` per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


__all__ = ["KeyedLocks"]
