"""Click-time authorisation data: user-group membership cached with a TTL (failures never
cached, never authorising), user profiles, replay memory, and signature checks — with an
injected clock and a stub Web API client (no sockets)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import timedelta
from typing import Any

import pytest
from slack_bolt.app.async_app import AsyncApp
from slack_sdk import signature as slack_signature
from slack_sdk.errors import SlackApiError

from adapters.slack.directory import Directory, TtlCache
from adapters.slack.events import SlackEvents
from adapters.slack.interactions import interaction_key
from adapters.slack.seen import SeenSet
from bench.fakes.slack_payloads import block_actions, view_submission
from bot.domain import Tier
from bot.errors import ChannelError, NotAuthorized
from bot.policy.model import GroupSpec, Policy, SlackRoute


def api_error(message: str, response: dict[str, Any]) -> Exception:
    """What AsyncWebClient raises for an ``ok: false`` answer."""
    return SlackApiError(message, response)  # type: ignore[no-untyped-call]  # slack_sdk: untyped


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class StubClient:
    """Answers like AsyncWebClient: dict-like responses, SlackApiError for ok:false."""

    def __init__(self) -> None:
        self.groups: dict[str, list[str]] = {"S0FIN": ["U0ALICE", "U0ERIN"]}
        self.users: dict[str, dict[str, Any]] = {
            "U0ALICE": {
                "id": "U0ALICE",
                "team_id": "T0",
                "name": "alice",
                "profile": {"display_name": "Alice", "email": "alice@example.com"},
            },
        }
        self.fail_next = 0
        self.calls: list[str] = []

    async def usergroups_users_list(self, *, usergroup: str) -> dict[str, Any]:
        self.calls.append(f"usergroups.users.list {usergroup}")
        await asyncio.sleep(0)
        if self.fail_next:
            self.fail_next -= 1
            raise api_error("ratelimited", {"ok": False, "error": "ratelimited"})
        if usergroup not in self.groups:
            raise api_error("no", {"ok": False, "error": "no_such_subteam"})
        return {"ok": True, "users": self.groups[usergroup]}

    async def users_info(self, *, user: str) -> dict[str, Any]:
        self.calls.append(f"users.info {user}")
        if user not in self.users:
            raise api_error("no", {"ok": False, "error": "user_not_found"})
        return {"ok": True, "user": self.users[user]}

    async def users_lookupByEmail(self, *, email: str) -> dict[str, Any]:
        self.calls.append(f"users.lookupByEmail {email}")
        for user in self.users.values():
            if user["profile"].get("email") == email:
                return {"ok": True, "user": user}
        raise api_error("no", {"ok": False, "error": "users_not_found"})


def policy() -> Policy:
    groups = {
        "finance": GroupSpec("finance", slack=SlackRoute("C0FIN", "S0FIN", ("U0BOSS",))),
        "leads": GroupSpec("leads", slack=SlackRoute("C0LEADS", None, ("U0CAROL",))),
        "broken": GroupSpec("broken", slack=SlackRoute("C0X", "S0GONE", ())),
        "console-only": GroupSpec("console-only"),
    }
    return Policy((), groups, Tier.CONFIRM, timedelta(minutes=15), "sha256:" + "0" * 64)


def directory(client: StubClient, clock: Clock) -> Directory:
    # StubClient answers the few AsyncWebClient calls Directory makes, without subclassing it
    return Directory(client, ttl=60.0, now=clock)  # type: ignore[arg-type]


async def test_membership_by_explicit_id_or_user_group() -> None:
    client, clock = StubClient(), Clock()
    d = directory(client, clock)
    everything = ["finance", "leads", "broken", "console-only", "unknown"]
    assert await d.memberships("U0ALICE", everything, policy()) == ["finance"]
    assert await d.memberships("U0BOSS", everything, policy()) == ["finance"]
    assert await d.memberships("U0CAROL", everything, policy()) == ["leads"]
    assert await d.memberships("U0MALLORY", everything, policy()) == []
    assert await d.memberships("U0ALICE", ["leads"], policy()) == []


async def test_user_group_is_cached_for_the_ttl_only() -> None:
    client, clock = StubClient(), Clock()
    d = directory(client, clock)
    await d.memberships("U0ALICE", ["finance"], policy())
    client.groups["S0FIN"] = ["U0ERIN"]  # Alice leaves the group
    assert await d.memberships("U0ALICE", ["finance"], policy()) == ["finance"]  # cached
    clock.t += 61
    assert await d.memberships("U0ALICE", ["finance"], policy()) == []
    assert client.calls.count("usergroups.users.list S0FIN") == 2


async def test_a_failed_lookup_is_not_authorised_and_not_cached() -> None:
    client, clock = StubClient(), Clock()
    d = directory(client, clock)
    client.fail_next = 1
    assert await d.memberships("U0ALICE", ["finance"], policy()) == []
    assert await d.memberships("U0ALICE", ["finance"], policy()) == ["finance"]
    with pytest.raises(ChannelError, match="no_such_subteam"):
        await d.usergroup_members("S0GONE")


async def test_concurrent_lookups_share_one_call() -> None:
    client, clock = StubClient(), Clock()
    d = directory(client, clock)
    results = await asyncio.gather(*(d.usergroup_members("S0FIN") for _ in range(20)))
    assert all(r == frozenset({"U0ALICE", "U0ERIN"}) for r in results)
    assert client.calls.count("usergroups.users.list S0FIN") == 1


async def test_profiles_and_email_lookup() -> None:
    client, clock = StubClient(), Clock()
    d = directory(client, clock)
    alice = await d.user("U0ALICE")
    assert (alice.name, alice.email, alice.team_id) == ("Alice", "alice@example.com", "T0")
    with pytest.raises(ChannelError, match="user_not_found"):
        await d.user("U0NOBODY")
    found = await d.user_by_email("alice@example.com")
    assert found is not None and found.id == "U0ALICE"
    assert await d.user_by_email("nobody@example.com") is None


async def test_ttl_cache_forgets_failures() -> None:
    clock = Clock()
    cache: TtlCache[int] = TtlCache(10.0, clock)
    attempts = 0

    async def flaky() -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ChannelError("down")
        return attempts

    with pytest.raises(ChannelError):
        await cache.get("k", flaky)
    assert await cache.get("k", flaky) == 2
    assert await cache.get("k", flaky) == 2
    assert attempts == 2


def test_seen_set_remembers_for_the_ttl() -> None:
    clock = Clock()
    seen = SeenSet(100.0, limit=3, now=clock)
    assert seen.add("a") and not seen.add("a") and "a" in seen
    clock.t += 101
    assert "a" not in seen and seen.add("a")
    for key in "bcd":
        seen.add(key)
    assert len(seen) == 3 and "a" not in seen  # bounded: the oldest goes first


def test_interaction_keys_tell_replays_from_new_clicks() -> None:
    click = block_actions("signoff_approve", "r1", user="U0ALICE")
    again = block_actions("signoff_approve", "r1", user="U0ALICE")
    assert interaction_key(click) == interaction_key(dict(click))
    assert interaction_key(click) != interaction_key(again)
    submit = view_submission("signoff_deny_reason", "{}", {}, user="U0ALICE")
    assert interaction_key(submit).startswith("view_submission:U0ALICE:")


class FixedClock(slack_signature.Clock):
    def __init__(self, now: float) -> None:
        self.t = now

    def now(self) -> float:
        return self.t


def signature(secret: str, ts: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    return "v0=" + mac.hexdigest()


def test_signature_check_v0_hmac_with_a_five_minute_window() -> None:
    clock = FixedClock(1_700_000_000)
    events = SlackEvents(AsyncApp(signing_secret="shh", token="xoxb-test"), "shh", clock)
    body = b"payload=%7B%7D"
    ts = "1700000000"
    good = signature("shh", ts, body)
    events.check_signature(body, ts, good)
    refused: list[tuple[bytes, str | None, str | None]] = [
        (body + b"x", ts, good),
        (body, ts, signature("other", ts, body)),
        (body, ts, None),
        (body, None, good),
        (body, "not-a-number", good),
    ]
    for args in refused:
        with pytest.raises(NotAuthorized):
            events.check_signature(*args)
    clock.t += 301
    with pytest.raises(NotAuthorized):
        events.check_signature(body, ts, good)  # stale
    clock.t = 1_700_000_000 - 301
    with pytest.raises(NotAuthorized):
        events.check_signature(body, ts, good)  # from the future
