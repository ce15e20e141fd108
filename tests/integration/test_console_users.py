"""``bot.store.users.UserStore`` on SQLite and PostgreSQL: users, sessions, login throttle."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.errors import Conflict, NotFound
from bot.store import SqlStore
from bot.store.migrate import differences
from bot.store.users import ConsoleSession, ConsoleUser, Throttle, UserStore

NOW = datetime(2026, 11, 21, 10, tzinfo=UTC)


async def test_users_sessions_and_throttles(store: SqlStore) -> None:
    assert differences(store.engine) == []
    users = UserStore(store)
    await users.add_user(ConsoleUser("alice", "$argon2id$x", NOW))
    await users.add_user(ConsoleUser("bob", "$argon2id$y", NOW))
    with pytest.raises(Conflict):
        await users.add_user(ConsoleUser("alice", "$argon2id$z", NOW))
    assert [u.name for u in await users.list_users()] == ["alice", "bob"]
    assert await users.get_user("alice") == ConsoleUser("alice", "$argon2id$x", NOW)
    assert await users.get_user("nobody") is None

    live = ConsoleSession("h1", "alice", "csrf1", NOW, NOW + timedelta(hours=8))
    old = ConsoleSession("h2", "bob", "csrf2", NOW - timedelta(days=1), NOW - timedelta(hours=1))
    await users.add_session(live)
    await users.add_session(old)
    assert await users.get_session("h1") == live
    assert await users.purge_sessions(NOW) == 1
    assert await users.get_session("h2") is None

    disabled = await users.set_user_disabled("alice", True)
    assert disabled.disabled
    assert await users.get_session("h1") is None  # disabling ends the sessions
    with pytest.raises(NotFound):
        await users.set_user_disabled("nobody", True)

    first = Throttle("user:alice", 1, NOW)
    await users.save_throttle(first)
    second = Throttle("user:alice", 2, NOW + timedelta(seconds=1), NOW + timedelta(minutes=1))
    await users.save_throttle(second)  # upsert
    found = await users.throttles(["user:alice", "ip:127.0.0.1"])
    assert found == {"user:alice": second}
    await users.clear_throttle("user:alice")
    assert await users.throttles(["user:alice"]) == {}


async def test_parallel_attempts_lose_no_update_across_store_instances(store_url: str) -> None:
    """Two ``SqlStore``s on one database (as two ``signoff serve`` processes): 40 attempts
    counted concurrently add up to 40, and a lock set by one is seen by the other."""
    stores = [await SqlStore.open(store_url), await SqlStore.open(store_url)]
    try:
        users = [UserStore(s) for s in stores]

        def step(key: str, previous: Throttle | None) -> Throttle:
            return Throttle(key, (previous.failures if previous else 0) + 1, NOW)

        results = await asyncio.gather(
            *(
                users[i % 2].count_attempt(["user:alice", "ip:192.0.2.1"], NOW, step)
                for i in range(40)
            )
        )
        assert results == [None] * 40
        found = await users[0].throttles(["user:alice", "ip:192.0.2.1"])
        assert {t.failures for t in found.values()} == {40}

        def lock(key: str, previous: Throttle | None) -> Throttle:
            return Throttle(key, 41, NOW, NOW + timedelta(minutes=1))

        assert await users[0].count_attempt(["user:alice"], NOW, lock) is None
        locked = await users[1].count_attempt(["user:alice"], NOW, step)
        assert locked == NOW + timedelta(minutes=1)
        assert (await users[1].throttles(["user:alice"]))["user:alice"].failures == 41
    finally:
        for s in stores:
            await s.close()
