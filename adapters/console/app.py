"""The console's web plumbing: its shared state, Jinja2 templates, security headers, HTML
error pages, and who is logged in.

Templates are packaged with the module (``jinja2.PackageLoader``) with autoescaping on for
every template, so agent-supplied text is always HTML-escaped. Pages carry a strict Content
Security Policy (scripts and styles only from ``/console/static``), are never framed or
cached, and send no referrer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from adapters.console.channel import ConsoleChannel
from adapters.console.sessions import CSRF_FIELD, Sessions, check_token
from adapters.console.stepup import StepUp
from adapters.console.text import finalize, pretty_json
from adapters.console.throttle import LoginThrottle
from bot.accounts import ConsoleSession, Users
from bot.checkpoints import Checkpointer
from bot.domain import Approver, Platform, Request, Vote
from bot.errors import Forbidden, SignoffError
from bot.policy.people import label as person_label
from bot.service import Gate
from bot.settings import Settings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass
class Console:
    """Everything the console's handlers share (one per process)."""

    gate: Gate
    users: Users
    sessions: Sessions
    throttle: LoginThrottle
    checkpoints: Checkpointer
    settings: Settings
    channel: ConsoleChannel
    templates: jinja2.Environment
    stepup: StepUp
    verify_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


APP_CONSOLE = web.AppKey("console", Console)


@dataclass(frozen=True, slots=True)
class Viewer:
    """The logged-in console user, the person they are (SPEC §5) and the policy groups
    that person belongs to."""

    name: str
    groups: frozenset[str]
    session: ConsoleSession
    person: str = ""

    @property
    def csrf(self) -> str:
        return self.session.csrf_token

    def may_decide(self, request: Request) -> bool:
        return bool(self.groups.intersection(request.approver_groups))

    def voted(self, votes: list[Vote]) -> bool:
        """Whether this person already voted, from any channel."""
        return any(
            v.approver.key == self.person
            or (v.approver.platform is Platform.CONSOLE and v.approver.user_id == self.name)
            for v in votes
        )


def _fmt_time(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def make_templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("adapters.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=finalize,
    )
    env.filters["time"] = _fmt_time
    env.filters["pretty"] = pretty_json
    env.filters["person"] = person_label
    env.globals["csrf_field"] = CSRF_FIELD
    return env


def console_of(request: web.Request) -> Console:
    return request.app[APP_CONSOLE]


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    console = console_of(request)
    html = console.templates.get_template(template).render(**context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def console_approver(user: str) -> Approver:
    """The console login ``user`` as an ``Approver`` (before the gate resolves the person)."""
    return Approver(Platform.CONSOLE, "console", user, user, via="console_login")


def memberships(gate: Gate, user: str) -> tuple[str, frozenset[str]]:
    """The person console login ``user`` is, and the policy groups they belong to: groups
    listing that person as a member, and groups whose ``console.users`` list ``user``."""
    policy = gate.policy
    person = policy.people.resolve(console_approver(user))
    listed = (
        name
        for name, spec in policy.groups.items()
        if spec.console is not None and user in spec.console.users
    )
    return person, frozenset((*listed, *policy.people.groups_of(person)))


async def viewer(request: web.Request) -> Viewer | None:
    console = console_of(request)
    session = await console.sessions.find(request)
    if session is None:
        return None
    user = await console.users.get_user(session.user)
    if user is None or user.disabled:
        return None
    person, groups = memberships(console.gate, user.name)
    return Viewer(user.name, groups, session, person)


async def require_viewer(request: web.Request) -> Viewer:
    """The logged-in user; otherwise redirect to the login page (303)."""
    found = await viewer(request)
    if found is None:
        target = request.rel_url.path_qs if request.method == "GET" else "/console/"
        raise web.HTTPSeeOther("/console/login?" + urlencode({"next": target}))
    return found


async def require_csrf(request: web.Request, who: Viewer) -> dict[str, str]:
    """The posted form, once its CSRF token matched the session's; else 403."""
    form = await request.post()
    given = form.get(CSRF_FIELD)
    try:
        check_token(who.csrf, given if isinstance(given, str) else None)
    except Forbidden:
        log.warning("console: refused a form without a valid CSRF token (%s)", request.path)
        raise web.HTTPForbidden(
            reason="the form is missing its security token; reload the page"
        ) from None
    return {k: v for k, v in form.items() if isinstance(v, str)}


@web.middleware
async def page_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Security headers on every console answer; HTTP errors as HTML pages."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            _secure_headers(exc)
            raise
        who = None
        try:
            who = await viewer(request)
        except Exception:  # the error page must render even when the store is down
            log.debug("no viewer for the error page", exc_info=True)
        phrase = HTTPStatus(exc.status).phrase
        response = render(
            request,
            "error.html",
            status=exc.status,
            viewer=who,
            title=phrase,
            message=exc.reason if exc.reason != phrase else "",
        )
    except SignoffError as exc:
        log.warning("console %s %s: %s", request.method, request.path, exc.diagnostics())
        response = render(
            request,
            "error.html",
            status=exc.status,
            viewer=None,
            title=HTTPStatus(exc.status).phrase,
            message=exc.diagnostics(),
        )
    _secure_headers(response)
    return response


def _secure_headers(response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers.setdefault("Cache-Control", "no-store")
