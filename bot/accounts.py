"""Console accounts: who may log in to the console, their sessions, login throttles and
security keys, as values, and the ports the console reads and writes them through.

The console (``adapters.console``) depends on these protocols only; ``bot.store.users`` and
``bot.store.passkeys`` implement them on the SQL database, and the composition root hands the
console those implementations. Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    name: str
    password_hash: str
    created_at: datetime
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A logged-in browser: ``id_hash`` is the SHA-256 hex of the cookie value."""

    id_hash: str
    user: str
    csrf_token: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Throttle:
    """Failed logins counted under ``key`` (``user:NAME`` or ``ip:ADDRESS``)."""

    key: str
    failures: int
    last_failure_at: datetime
    locked_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Passkey:
    credential_id: str
    user: str
    public_key: str
    sign_count: int
    label: str
    created_at: datetime


class Users(Protocol):
    """Console users, sessions and login throttles (``bot.store.users.UserStore``). Every
    method raises ``StoreError`` when the database cannot be reached."""

    async def get_user(self, name: str) -> ConsoleUser | None: ...
    async def add_session(self, session: ConsoleSession) -> None: ...
    async def get_session(self, id_hash: str) -> ConsoleSession | None: ...
    async def delete_session(self, id_hash: str) -> None: ...
    async def purge_sessions(self, now: datetime) -> int: ...
    async def count_attempt(
        self,
        keys: Collection[str],
        now: datetime,
        step: Callable[[str, Throttle | None], Throttle],
    ) -> datetime | None:
        """The latest lock on ``keys`` at ``now``, or None after counting one more failure
        under each key (atomically: see ``UserStore.count_attempt``)."""
        ...

    async def refund_attempt(self, key: str) -> None: ...
    async def clear_throttle(self, key: str) -> None: ...


class UserAdmin(Users, Protocol):
    """``Users`` plus what the ``signoff users`` commands manage (never the console's own
    pages). Every method raises ``StoreError``; ``set_user_disabled`` raises ``NotFound``
    for an unknown user."""

    async def add_user(self, user: ConsoleUser) -> None: ...
    async def list_users(self) -> list[ConsoleUser]: ...
    async def set_user_disabled(self, name: str, disabled: bool) -> ConsoleUser: ...


class Passkeys(Protocol):
    """Registered security keys (``bot.store.passkeys.PasskeyStore``)."""

    async def add_passkey(self, key: Passkey) -> None: ...
    async def passkeys_of(self, user: str) -> list[Passkey]: ...
    async def passkey(self, credential_id: str) -> Passkey | None: ...
    async def set_sign_count(self, credential_id: str, count: int) -> None: ...


__all__ = [
    "ConsoleSession",
    "ConsoleUser",
    "Passkey",
    "Passkeys",
    "Throttle",
    "UserAdmin",
    "Users",
]
