"""Console users, their server-side sessions and the login throttle, in the signoff database.

``UserStore`` shares the ``SqlStore``'s engine and worker threads (and so its transactions,
error translation and SQLite write lock). Its tables join ``bot.store.tables.METADATA`` so the
schema check sees them; migration ``0002_console_users`` creates them.

Only password *hashes* (Argon2id, made by the console adapter) and session-id *hashes*
(SHA-256 of a random 256-bit cookie value) are stored: a copy of the database neither reveals
passwords nor lets anyone take over a live session.

Errors: database failures raise ``StoreError``; ``add_user`` raises ``Conflict`` for an
existing name; ``set_user_disabled`` raises ``NotFound``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, exc, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field

from bot.accounts import ConsoleSession, ConsoleUser, Throttle
from bot.domain import utc
from bot.errors import Conflict, NotFound
from bot.store.raw import RawQuery
from bot.store.sql import SqlStore
from bot.store.tables import TIMESTAMP, Base, _table


class ConsoleUserRow(Base, table=True):
    __tablename__ = "console_users"

    name: str = Field(primary_key=True)
    password_hash: str = Field(nullable=False)
    disabled: bool = Field(default=False, nullable=False)
    created_at: datetime = Field(sa_type=TIMESTAMP, nullable=False)


class ConsoleSessionRow(Base, table=True):
    __tablename__ = "console_sessions"

    id_hash: str = Field(primary_key=True)
    user_name: str = Field(
        foreign_key="console_users.name", nullable=False, ondelete="CASCADE", index=True
    )
    csrf_token: str = Field(nullable=False)
    created_at: datetime = Field(sa_type=TIMESTAMP, nullable=False)
    expires_at: datetime = Field(sa_type=TIMESTAMP, nullable=False, index=True)


class LoginThrottleRow(Base, table=True):
    __tablename__ = "login_throttle"

    key: str = Field(primary_key=True)
    failures: int = Field(nullable=False)
    last_failure_at: datetime = Field(sa_type=TIMESTAMP, nullable=False)
    locked_until: datetime | None = Field(default=None, sa_type=TIMESTAMP, nullable=True)


CONSOLE_USERS = _table(ConsoleUserRow)
CONSOLE_SESSIONS = _table(ConsoleSessionRow)
# read by every console page and form
_USER = RawQuery(select(CONSOLE_USERS).where(CONSOLE_USERS.c.name == bindparam("name")))
_SESSION = RawQuery(
    select(CONSOLE_SESSIONS).where(CONSOLE_SESSIONS.c.id_hash == bindparam("id_hash"))
)
LOGIN_THROTTLE = _table(LoginThrottleRow)


def _to_user(row: Any) -> ConsoleUser:
    return ConsoleUser(row.name, row.password_hash, utc(row.created_at), bool(row.disabled))


def _to_session(row: Any) -> ConsoleSession:
    return ConsoleSession(
        row.id_hash, row.user_name, row.csrf_token, utc(row.created_at), utc(row.expires_at)
    )


def _to_throttle(row: Any) -> Throttle:
    locked = utc(row.locked_until) if row.locked_until is not None else None
    return Throttle(row.key, int(row.failures), utc(row.last_failure_at), locked)


class UserStore:
    """Console users, sessions and login throttles on a ``SqlStore``'s database."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        dialect = store.engine.dialect.name
        self._upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert

    # users

    async def add_user(self, user: ConsoleUser) -> None:
        """Raises ``Conflict`` when the name exists."""
        values = {
            "name": user.name,
            "password_hash": user.password_hash,
            "disabled": user.disabled,
            "created_at": utc(user.created_at),
        }

        def add(conn: Connection) -> None:
            try:
                conn.execute(insert(CONSOLE_USERS), values)
            except exc.IntegrityError as error:
                raise Conflict(f"console user {user.name!r} already exists") from error

        await self._store.write(add)

    async def get_user(self, name: str) -> ConsoleUser | None:
        (rows,) = await self._store.fetch((_USER, {"name": name}))
        return _to_user(rows[0]) if rows else None

    async def list_users(self) -> list[ConsoleUser]:
        query = select(CONSOLE_USERS).order_by(CONSOLE_USERS.c.name)
        rows = await self._store.read(lambda conn: conn.execute(query).all())
        return [_to_user(row) for row in rows]

    async def set_user_disabled(self, name: str, disabled: bool) -> ConsoleUser:
        """Disable (ending every session of the user) or enable. Raises ``NotFound``."""
        statement = (
            update(CONSOLE_USERS)
            .where(CONSOLE_USERS.c.name == name)
            .values(disabled=disabled)
            .returning(*CONSOLE_USERS.c)
        )
        end_sessions = delete(CONSOLE_SESSIONS).where(CONSOLE_SESSIONS.c.user_name == name)

        def change(conn: Connection) -> Any:
            row = conn.execute(statement).first()
            if row is not None and disabled:
                conn.execute(end_sessions)
            return row

        row = await self._store.write(change)
        if row is None:
            raise NotFound(f"no console user {name!r}")
        return _to_user(row)

    # sessions

    async def add_session(self, session: ConsoleSession) -> None:
        values = {
            "id_hash": session.id_hash,
            "user_name": session.user,
            "csrf_token": session.csrf_token,
            "created_at": utc(session.created_at),
            "expires_at": utc(session.expires_at),
        }
        await self._store.execute(insert(CONSOLE_SESSIONS), values)

    async def get_session(self, id_hash: str) -> ConsoleSession | None:
        (rows,) = await self._store.fetch((_SESSION, {"id_hash": id_hash}))
        return _to_session(rows[0]) if rows else None

    async def delete_session(self, id_hash: str) -> None:
        await self._store.execute(
            delete(CONSOLE_SESSIONS).where(CONSOLE_SESSIONS.c.id_hash == id_hash)
        )

    async def purge_sessions(self, now: datetime) -> int:
        """Delete sessions that expired before ``now``; returns how many."""
        statement = delete(CONSOLE_SESSIONS).where(CONSOLE_SESSIONS.c.expires_at < utc(now))
        return await self._store.write(lambda conn: conn.execute(statement).rowcount)

    # login throttle

    async def throttles(self, keys: Collection[str]) -> dict[str, Throttle]:
        query = select(LOGIN_THROTTLE).where(LOGIN_THROTTLE.c.key.in_(list(keys)))
        rows = await self._store.read(lambda conn: conn.execute(query).all())
        return {row.key: _to_throttle(row) for row in rows}

    async def save_throttle(self, throttle: Throttle) -> None:
        values = {
            "key": throttle.key,
            "failures": throttle.failures,
            "last_failure_at": utc(throttle.last_failure_at),
            "locked_until": utc(throttle.locked_until) if throttle.locked_until else None,
        }
        statement = self._upsert(LOGIN_THROTTLE).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[LOGIN_THROTTLE.c.key],
            set_={k: v for k, v in values.items() if k != "key"},
        )
        await self._store.execute(statement)

    async def count_attempt(
        self,
        keys: Collection[str],
        now: datetime,
        step: Callable[[str, Throttle | None], Throttle],
    ) -> datetime | None:
        """Atomically: when any of ``keys`` is locked at ``now``, the latest lock (nothing is
        written); otherwise every key's counter becomes ``step(key, current)`` and None.

        One write transaction: placeholder rows are inserted first (``ON CONFLICT DO
        NOTHING``) so that ``SELECT … FOR UPDATE`` locks a row even for a key never seen
        (PostgreSQL); SQLite's ``BEGIN IMMEDIATE`` serialises writers anyway. Concurrent
        attempts, in one process or many, therefore never read the same count."""
        ordered = sorted(set(keys))
        placeholder = self._upsert(LOGIN_THROTTLE).on_conflict_do_nothing(
            index_elements=[LOGIN_THROTTLE.c.key]
        )
        query = select(LOGIN_THROTTLE).where(LOGIN_THROTTLE.c.key.in_(ordered)).with_for_update()

        def run(conn: Connection) -> datetime | None:
            conn.execute(
                placeholder,
                [{"key": k, "failures": 0, "last_failure_at": utc(now)} for k in ordered],
            )
            found = {row.key: _to_throttle(row) for row in conn.execute(query).all()}
            locks = [
                t.locked_until
                for t in found.values()
                if t.locked_until is not None and t.locked_until > now
            ]
            if locks:
                return max(locks)
            for key in ordered:
                current = found.get(key)
                updated = step(key, current if current and current.failures else None)
                conn.execute(
                    update(LOGIN_THROTTLE)
                    .where(LOGIN_THROTTLE.c.key == key)
                    .values(
                        failures=updated.failures,
                        last_failure_at=utc(updated.last_failure_at),
                        locked_until=utc(updated.locked_until) if updated.locked_until else None,
                    )
                )
            return None

        return await self._store.write(run)

    async def refund_attempt(self, key: str) -> None:
        """Take back one counted attempt under ``key`` (it turned out to be a success)."""
        statement = (
            update(LOGIN_THROTTLE)
            .where(LOGIN_THROTTLE.c.key == key, LOGIN_THROTTLE.c.failures > 0)
            .values(failures=LOGIN_THROTTLE.c.failures - 1)
        )
        await self._store.execute(statement)

    async def clear_throttle(self, key: str) -> None:
        await self._store.execute(delete(LOGIN_THROTTLE).where(LOGIN_THROTTLE.c.key == key))


__all__ = ["ConsoleSession", "ConsoleUser", "Throttle", "UserStore"]
