"""Failed-login throttling for the console: per user name and per client address, with an
exponentially growing lockout.

Counters live in the database (``bot.store.users``), so every signoff process sharing it
sees the same lockouts. The first ``free`` failures under a key cost nothing; each one after
that locks the key for ``base * 2**(failures - free)`` (capped at ``cap``). While a key is
locked, attempts are refused without checking the password and are not counted. A key's
count starts again after ``reset`` without failures. A successful login clears its user
key (not the address key, so one valid account cannot unlock guessing at others).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.store.users import Throttle, UserStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    free: int
    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(minutes=15)
    reset: timedelta = timedelta(hours=1)

    def after_failure(self, key: str, previous: Throttle | None, now: datetime) -> Throttle:
        """The counter after one more failure at ``now``."""
        failures = 1
        if previous is not None and now - previous.last_failure_at < self.reset:
            failures = previous.failures + 1
        locked = None
        if failures >= self.free:
            delay = min(self.base * 2 ** (failures - self.free), self.cap)
            locked = now + delay
        return Throttle(key, failures, now, locked)


USER_POLICY = ThrottlePolicy(free=3)
ADDRESS_POLICY = ThrottlePolicy(free=20)


def user_key(name: str) -> str:
    return "user:" + name.strip().casefold()


def address_key(address: str) -> str:
    return "ip:" + address


class LoginThrottle:
    """Checks and records failed logins under a user key and an address key."""

    def __init__(
        self,
        users: UserStore,
        *,
        user_policy: ThrottlePolicy = USER_POLICY,
        address_policy: ThrottlePolicy = ADDRESS_POLICY,
    ) -> None:
        self.users = users
        self.policies = {"user": user_policy, "ip": address_policy}

    async def locked_until(self, keys: Sequence[str], now: datetime) -> datetime | None:
        """The latest lock in force on any of ``keys`` (None when none is locked)."""
        found = await self.users.throttles(keys)
        locks = [t.locked_until for t in found.values() if t.locked_until and t.locked_until > now]
        return max(locks, default=None)

    async def failed(self, keys: Sequence[str], now: datetime) -> None:
        found = await self.users.throttles(keys)
        for key in keys:
            policy = self.policies[key.split(":", 1)[0]]
            updated = policy.after_failure(key, found.get(key), now)
            if updated.locked_until is not None:
                log.warning(
                    "console login locked for %s after %d failures",
                    key.split(":")[0],
                    updated.failures,
                )
            await self.users.save_throttle(updated)

    async def succeeded(self, user: str) -> None:
        await self.users.clear_throttle(user_key(user))
