"""The console over plain HTTP (aiohttp's client against the real server): cookie attributes,
login CSRF, redirects, headers, disabled users; and the throttle's arithmetic."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from adapters.console.addresses import client_address
from adapters.console.throttle import ADDRESS_POLICY, USER_POLICY, ThrottlePolicy
from bot.accounts import Throttle
from bot.settings import Network
from tests.integration.console_support import (
    PASSWORD,
    TOKEN,
    Server,
    fresh_session,
    running_server,
)
from tests.integration.console_support import http_login as login


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path) as running:
        yield running


async def test_session_cookie_attributes_over_plain_http(server: Server) -> None:
    async with fresh_session() as http:
        response = await login(http, server.url)
        assert response.status == 303
        assert response.headers["Location"] == "/console/audit"
        cookie = response.cookies["signoff_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
        assert cookie["path"] == "/console"
        assert not cookie["secure"]
        assert len(cookie.value) >= 43  # 256 random bits, base64url


@pytest.mark.parametrize(
    ("server", "headers", "secure"),
    [
        ({"public_url": "https://signoff.example"}, {}, True),
        ({"trust_proxy_https": True}, {"X-Forwarded-Proto": "https"}, True),
        ({}, {"X-Forwarded-Proto": "https"}, False),  # proxy header not trusted
    ],
)
async def test_secure_cookies_behind_https(
    tmp_path: Path, server: dict[str, Any], headers: dict[str, str], secure: bool
) -> None:
    async with running_server(tmp_path, **server) as running, fresh_session() as http:
        response = await login(http, running.url, headers=headers)
        assert response.status == 303
        assert bool(response.cookies["signoff_session"]["secure"]) is secure


async def test_login_without_its_csrf_token_is_refused(server: Server) -> None:
    async with fresh_session() as http:
        response = await http.post(
            f"{server.url}/console/login",
            data={"username": "alice", "password": PASSWORD},
            allow_redirects=False,
        )
        assert response.status == 403
        assert "signoff_session" not in response.cookies


async def test_next_must_stay_inside_the_console(server: Server) -> None:
    for target in ("https://evil.example/", "//evil.example/console/", "/console/../v1"):
        async with fresh_session() as http:
            async with http.get(f"{server.url}/console/login") as page:
                token = TOKEN.search(await page.text())
                assert token is not None
            response = await http.post(
                f"{server.url}/console/login",
                data={
                    "csrf_token": token.group(1),
                    "username": "alice",
                    "password": PASSWORD,
                    "next": target,
                },
                allow_redirects=False,
            )
            assert response.headers["Location"] == "/console/"


async def test_pages_carry_security_headers(server: Server) -> None:
    async with fresh_session() as http:
        await login(http, server.url)
        async with http.get(f"{server.url}/console/") as page:
            assert page.status == 200
            assert "script-src 'self'" in page.headers["Content-Security-Policy"]
            assert page.headers["X-Frame-Options"] == "DENY"
            assert page.headers["Cache-Control"] == "no-store"
        async with http.get(f"{server.url}/console/requests/nope") as missing:
            assert missing.status == 404
            assert missing.content_type == "text/html"


async def test_disabling_a_user_ends_their_session(server: Server) -> None:
    async with fresh_session() as http:
        await login(http, server.url)
        async with http.get(f"{server.url}/console/", allow_redirects=False) as page:
            assert page.status == 200
        await server.runtime.users.set_user_disabled("alice", True)
        async with http.get(f"{server.url}/console/", allow_redirects=False) as page:
            assert page.status == 303
            assert page.headers["Location"].startswith("/console/login")
        response = await login(http, server.url)
        assert response.status == 401


def test_throttle_locks_exponentially_after_the_free_failures() -> None:
    policy = ThrottlePolicy(free=3, base=timedelta(seconds=30), cap=timedelta(minutes=15))
    now = datetime(2026, 11, 21, tzinfo=UTC)
    state: Throttle | None = None
    locks = []
    for i in range(8):
        state = policy.after_failure("user:alice", state, now + timedelta(seconds=i))
        locks.append(
            None if state.locked_until is None else state.locked_until - state.last_failure_at
        )
    assert locks == [
        None,
        None,
        timedelta(seconds=30),
        timedelta(seconds=60),
        timedelta(seconds=120),
        timedelta(seconds=240),
        timedelta(seconds=480),
        timedelta(minutes=15),
    ]
    assert state is not None and state.failures == 8
    later = policy.after_failure("user:alice", state, now + timedelta(hours=2))
    assert (later.failures, later.locked_until) == (1, None)


async def _fail_logins_from(url: str, forwarded_for: str, count: int) -> None:
    for n in range(count):  # a new name each time: only the address key adds up
        async with fresh_session() as http, http.get(f"{url}/console/login") as page:
            token = TOKEN.search(await page.text())
            assert token is not None
            cookie = page.cookies["signoff_login"].value
            async with http.post(
                f"{url}/console/login",
                data={"csrf_token": token.group(1), "username": f"nobody{n}", "password": "x"},
                headers={"Cookie": f"signoff_login={cookie}", "X-Forwarded-For": forwarded_for},
                allow_redirects=False,
            ) as response:
                assert response.status in (401, 429)


@pytest.mark.parametrize(
    ("server", "other_client_status"),
    [
        # the peer (127.0.0.1) is a trusted proxy: each client address counts on its own
        ({"trusted_proxies": (Network("127.0.0.0/8"),)}, 303),
        # no trusted proxy: the header is the client's word, so the peer address is locked
        ({}, 429),
    ],
)
async def test_the_address_throttle_counts_the_client_behind_a_trusted_proxy(
    tmp_path: Path, server: dict[str, Any], other_client_status: int
) -> None:
    async with running_server(tmp_path, **server) as running:
        await _fail_logins_from(running.url, "198.51.100.7, 203.0.113.5", ADDRESS_POLICY.free)
        async with fresh_session() as http:
            locked = await login(http, running.url, headers={"X-Forwarded-For": "203.0.113.5"})
            assert locked.status == 429  # the guessing address, even with a good password
        async with fresh_session() as http:
            other = await login(http, running.url, headers={"X-Forwarded-For": "203.0.113.9"})
            assert other.status == other_client_status


def test_client_address_takes_the_rightmost_hop_no_trusted_proxy_wrote() -> None:
    proxies = (Network("10.0.0.0/8"), Network("::1"))
    assert client_address("10.1.2.3", "203.0.113.5", proxies) == "203.0.113.5"
    # the client forged the left hops; the proxies appended the right ones
    assert client_address("10.1.2.3", "1.2.3.4, 203.0.113.5, 10.9.9.9", proxies) == "203.0.113.5"
    assert client_address("::1", "2001:db8::7", proxies) == "2001:db8::7"
    # from a peer that is not a trusted proxy, the header is ignored
    assert client_address("198.51.100.1", "203.0.113.5", proxies) == "198.51.100.1"
    assert client_address("10.1.2.3", None, proxies) == "10.1.2.3"
    assert client_address("10.1.2.3", "10.0.0.1, 10.0.0.2", proxies) == "10.0.0.1"
    assert client_address(None, "203.0.113.5", proxies) == "unknown"
    assert client_address("10.1.2.3", "203.0.113.5", ()) == "10.1.2.3"


async def test_parallel_wrong_passwords_are_throttled_before_the_password_check(
    server: Server,
) -> None:
    """The review's race: 40 parallel wrong passwords for one user all reached the password
    check (all 401, never 429). Counting first, atomically, lets only the free attempts
    through (each 401 is a password check); the rest are 429."""

    async def attempt() -> int:
        async with fresh_session() as http, http.get(f"{server.url}/console/login") as page:
            token = TOKEN.search(await page.text())
            assert token is not None
            cookie = page.cookies["signoff_login"].value
            async with http.post(
                f"{server.url}/console/login",
                data={"csrf_token": token.group(1), "username": "alice", "password": "wrong"},
                headers={"Cookie": f"signoff_login={cookie}"},
                allow_redirects=False,
            ) as response:
                return response.status

    statuses = await asyncio.gather(*(attempt() for _ in range(40)))
    assert statuses.count(401) == USER_POLICY.free
    assert statuses.count(429) == 40 - USER_POLICY.free
    # the right password is refused too while the lock holds
    async with fresh_session() as http:
        assert (await login(http, server.url)).status == 429


TRANSFER = {"tool": "payments.transfer", "arguments": {"amount": 20000}}


@dataclasses.dataclass
class Login:
    cookie: str  # the Cookie header of the session
    csrf: str  # the console forms' CSRF token


async def http_login_session(http: aiohttp.ClientSession, url: str) -> Login:
    """Sign alice in over plain HTTP; her session cookie and the forms' CSRF token."""
    response = await login(http, url)
    assert response.status == 303
    cookie = f"signoff_session={response.cookies['signoff_session'].value}"
    async with http.get(f"{url}/console/", headers={"Cookie": cookie}) as page:
        token = TOKEN.search(await page.text())
        assert token is not None
    return Login(cookie, token.group(1))


async def test_a_decision_reads_the_session_and_the_request_side_by_side(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console form's reads overlap (each is a database round trip and a store-thread hop
    before the long-polls can wake): the session lookup here waits until the request's read
    has started, which, read in turn, would never happen."""
    from bot.store.users import UserStore

    rid = (await server.submit(TRANSFER))["id"]
    async with fresh_session() as http:
        login = await http_login_session(http, server.url)
        started = asyncio.Event()
        gate_type = type(server.runtime.gate)
        real_view, real_session = gate_type.view, UserStore.get_session

        async def view(self: Any, request_id: str, *args: Any, **kwargs: Any) -> Any:
            started.set()
            return await real_view(self, request_id, *args, **kwargs)

        async def get_session(self: UserStore, id_hash: str) -> Any:
            await asyncio.wait_for(started.wait(), 5)
            return await real_session(self, id_hash)

        monkeypatch.setattr(gate_type, "view", view)
        monkeypatch.setattr(UserStore, "get_session", get_session)
        response = await http.post(
            f"{server.url}/console/requests/{rid}/decide",
            data={"csrf_token": login.csrf, "verdict": "approve", "reason": "ok"},
            headers={"Cookie": login.cookie},
            allow_redirects=False,
        )
        assert response.status == 303, await response.text()
    assert (await server.wait(rid, 5))["status"] == "approved"


async def test_decision_answers_keep_their_order(server: Server) -> None:
    """Not signed in (303 to the login page) before a bad CSRF token (403) before a request
    the viewer cannot see (404), even for an id that does not exist."""
    url = f"{server.url}/console/requests/no-such-request/decide"
    form = {"verdict": "approve", "reason": "ok"}
    async with fresh_session() as http:
        anonymous = await http.post(url, data=form, allow_redirects=False)
        assert anonymous.status == 303
        assert anonymous.headers["Location"].startswith("/console/login")
        login = await http_login_session(http, server.url)
        cookie = {"Cookie": login.cookie}
        forged = await http.post(url, data=form, headers=cookie, allow_redirects=False)
        assert forged.status == 403
        unknown = await http.post(
            url, data={**form, "csrf_token": login.csrf}, headers=cookie, allow_redirects=False
        )
        assert unknown.status == 404
