"""Console sessions and CSRF protection.

Decision (documented in docs/console.md): sessions are server-side rows in the signoff
database (``console_sessions``), so several signoff processes behind one address share them
and logout or ``users disable`` ends a session at once everywhere. The cookie carries a
random 256-bit value; the database holds only its SHA-256, so a database copy cannot be
replayed as a cookie. Cookies are ``HttpOnly``, ``SameSite=Strict``, scoped to ``/console``
and ``Secure`` whenever the console is reached over HTTPS (``server.public_url`` is
``https://``, the connection is TLS, or ``server.trust_proxy_https`` is set and the proxy
says ``X-Forwarded-Proto: https``).

CSRF: every form carries the session's own random token, compared in constant time; the
login form (before any session exists) uses a double-submit token kept in a short-lived
cookie. A POST without the right token is refused with 403 and changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from aiohttp import web

from bot.accounts import ConsoleSession, Users
from bot.errors import Forbidden
from bot.ports import Clock
from bot.settings import Settings

COOKIE = "signoff_session"
LOGIN_COOKIE = "signoff_login"
PATH = "/console"
CSRF_FIELD = "csrf_token"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_token(expected: str, given: str | None) -> None:
    """Constant-time comparison of a form token with the one issued. Raises ``Forbidden``
    unless they match; an absent or empty token never matches."""
    if not given or not expected:
        raise Forbidden("the form's security token is missing")
    if not hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8")):
        raise Forbidden("the form's security token does not match")


def is_secure(request: web.Request, settings: Settings) -> bool:
    if settings.server.public_url.lower().startswith("https://") or request.secure:
        return True
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return settings.server.trust_proxy_https and forwarded == "https"


class Sessions:
    """Creates, finds and ends console sessions; sets and clears their cookies."""

    def __init__(self, users: Users, settings: Settings, clock: Clock) -> None:
        self.users = users
        self.settings = settings
        self.clock = clock
        self.ttl: timedelta = settings.console.session_ttl

    def _set_cookie(
        self,
        request: web.Request,
        response: web.StreamResponse,
        name: str,
        value: str,
        max_age: int,
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=PATH,
            httponly=True,
            samesite="Strict",
            secure=is_secure(request, self.settings),
        )

    async def start(self, request: web.Request, response: web.StreamResponse, user: str) -> None:
        """Open a session for ``user`` and set its cookie on ``response``."""
        token = secrets.token_urlsafe(32)
        now = self.clock.now()
        await self.users.purge_sessions(now)
        await self.users.add_session(
            ConsoleSession(_digest(token), user, secrets.token_urlsafe(32), now, now + self.ttl)
        )
        self._set_cookie(request, response, COOKIE, token, int(self.ttl.total_seconds()))
        response.del_cookie(LOGIN_COOKIE, path=PATH)

    async def find(self, request: web.Request) -> ConsoleSession | None:
        """The live session named by the request's cookie (None if absent or expired)."""
        token = request.cookies.get(COOKIE)
        if not token or len(token) > 128:
            return None
        session = await self.users.get_session(_digest(token))
        if session is None or session.expires_at <= self.clock.now():
            return None
        return session

    async def end(self, request: web.Request, response: web.StreamResponse) -> None:
        token = request.cookies.get(COOKIE)
        if token and len(token) <= 128:
            await self.users.delete_session(_digest(token))
        response.del_cookie(COOKIE, path=PATH)

    def login_token(self, request: web.Request) -> tuple[str, bool]:
        """The login form's CSRF token: the cookie's if present, else a new one (second
        item True: set it with ``remember_login_token``)."""
        token = request.cookies.get(LOGIN_COOKIE)
        if token and len(token) <= 128:
            return token, False
        return secrets.token_urlsafe(32), True

    def remember_login_token(
        self, request: web.Request, response: web.StreamResponse, token: str
    ) -> None:
        self._set_cookie(request, response, LOGIN_COOKIE, token, 3600)

    @staticmethod
    def check_login_token(request: web.Request, given: str | None) -> None:
        """Raises ``Forbidden`` unless ``given`` is the sign-in form's token (its cookie)."""
        check_token(request.cookies.get(LOGIN_COOKIE, ""), given)
