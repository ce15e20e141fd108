"""Console login and logout.

One generic message for every failed login (unknown user, wrong password, disabled user,
throttled), so the form never tells which names exist; throttled attempts answer 429 without
checking the password. The ``next`` target is followed only when it is a console path.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web

from adapters.console.addresses import client_address
from adapters.console.app import console_of, render, require_csrf, require_viewer, viewer
from adapters.console.passwords import verify_password_async
from adapters.console.throttle import address_key, user_key
from bot.errors import Forbidden, NotAuthorized

log = logging.getLogger(__name__)

GENERIC_FAILURE = "Sign-in failed. Check the name and password, or wait a while and try again."
_SAFE_NEXT = re.compile(r"^/console/[A-Za-z0-9/_\-.?=&%]*$")


def safe_next(target: str | None) -> str:
    if target and _SAFE_NEXT.match(target) and "//" not in target and ".." not in target:
        return target
    return "/console/"


def _login_page(
    request: web.Request, *, status: int = 200, error: str = "", name: str = ""
) -> web.Response:
    sessions = console_of(request).sessions
    token, fresh = sessions.login_token(request)
    response = render(
        request,
        "login.html",
        status=status,
        viewer=None,
        error=error,
        name=name,
        token=token,
        next=safe_next(request.query.get("next")),
    )
    if fresh:
        sessions.remember_login_token(request, response, token)
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    if await viewer(request) is not None:
        raise web.HTTPSeeOther(safe_next(request.query.get("next")))
    return _login_page(request)


async def login(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    form = await request.post()
    token = form.get("csrf_token")
    try:
        console.sessions.check_login_token(request, token if isinstance(token, str) else None)
    except Forbidden:
        raise web.HTTPForbidden(
            reason="the sign-in form expired; reload the page and try again"
        ) from None
    name = str(form.get("username", "")).strip()[:128]
    password = str(form.get("password", ""))
    now = console.gate.now()
    address = client_address(
        request.remote,
        request.headers.get("X-Forwarded-For"),
        console.settings.server.trusted_proxies,
    )
    keys = [user_key(name), address_key(address)]
    # Counted before the password is checked, atomically (adapters.console.throttle).
    if await console.throttle.admit(keys, now) is not None:
        log.warning("console login refused while throttled")
        return _login_page(request, status=429, error=GENERIC_FAILURE, name=name)
    user = await console.users.get_user(name) if name else None
    try:
        await verify_password_async(user.password_hash if user else None, password)
        if user is None or user.disabled:
            raise NotAuthorized("no such user, or disabled")
    except NotAuthorized:
        log.info("console login failed")
        return _login_page(request, status=401, error=GENERIC_FAILURE, name=name)
    await console.throttle.succeeded(user.name, address)
    target = safe_next(str(form.get("next", "")))
    response = web.HTTPSeeOther(target)
    await console.sessions.start(request, response, user.name)
    log.info("console login: %s", user.name)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    who = await require_viewer(request)
    await require_csrf(request, who)
    response = web.HTTPSeeOther("/console/login")
    await console_of(request).sessions.end(request, response)
    raise response
