"""Failed-login throttling for the console: per user name and per client address, with an
exponentially growing lockout.

Counters live in the database (``bot.accounts.Users``), so every signoff process sharing it
sees the same lockouts. The first ``free`` failures under a key cost nothing; each one after
that locks the key for ``base * 2**(failures - free)`` (capped at ``cap``). While a key is
locked, attempts are refused without checking the password and are not counted. A key's
count starts again after ``reset`` without failures. A successful login clears its user
key (not the address key, so one valid account cannot unlock guessing at others).

Every attempt is counted *before* the password is checked, in one transaction that also
decides whether the attempt may proceed (``Users.count_attempt``): a burst of parallel
guesses cannot all slip in between a read and a write, and no update is lost. A success
then clears the user key and takes its attempt back from the address key.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.accounts import Throttle, Users

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
        users: Users,
        *,
        user_policy: ThrottlePolicy = USER_POLICY,
        address_policy: ThrottlePolicy = ADDRESS_POLICY,
    ) -> None:
        self.users = users
        self.policies = {"user": user_policy, "ip": address_policy}

    async def admit(self, keys: Sequence[str], now: datetime) -> datetime | None:
        """Count one attempt under every key, atomically, unless one is locked: returns the
        lock in force (the attempt is refused uncounted) or None (go on to the password)."""

        def step(key: str, previous: Throttle | None) -> Throttle:
            updated = self.policies[key.split(":", 1)[0]].after_failure(key, previous, now)
            if updated.locked_until is not None:
                log.warning(
                    "console login locked for %s after %d attempts",
                    key.split(":")[0],
                    updated.failures,
                )
            return updated

        return await self.users.count_attempt(keys, now, step)

    async def succeeded(self, user: str, address: str | None = None) -> None:
        await self.users.clear_throttle(user_key(user))
        if address is not None:
            await self.users.refund_attempt(address_key(address))
