"""A bounded set of recently seen keys that forgets them after a TTL.

Used to ignore replayed interaction payloads (Slack signatures stay valid for five minutes,
so keys are kept longer than that) and to post each decision reply once per card copy.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class SeenSet:
    def __init__(
        self, ttl: float, *, limit: int = 100_000, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.limit = limit
        self.now = now
        self._keys: OrderedDict[str, float] = OrderedDict()

    def add(self, key: str) -> bool:
        """Remember ``key``; True when it was not seen within the TTL (first time)."""
        now = self.now()
        self._expire(now)
        if key in self._keys:
            return False
        self._keys[key] = now + self.ttl
        if len(self._keys) > self.limit:
            self._keys.popitem(last=False)
        return True

    def __contains__(self, key: object) -> bool:
        expires = self._keys.get(key) if isinstance(key, str) else None
        return expires is not None and expires > self.now()

    def discard(self, key: str) -> None:
        self._keys.pop(key, None)

    def _expire(self, now: float) -> None:
        while self._keys:
            key, expires = next(iter(self._keys.items()))
            if expires > now:
                break
            del self._keys[key]

    def __len__(self) -> int:
        return len(self._keys)
