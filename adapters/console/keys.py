"""Console pages for security keys: registering them (``/console/security-keys``) and the
assertion options a step-up approval signs (``/console/requests/{id}/step-up/options``).
Every POST carries the session's CSRF token. The ceremonies are ``adapters.console.stepup``.
"""

from __future__ import annotations

import logging

from aiohttp import web

from adapters.console.app import console_of, render, require_csrf, require_viewer
from adapters.console.stepup import StepUpError
from bot.errors import Conflict, NotFound

log = logging.getLogger(__name__)


async def keys_page(request: web.Request) -> web.StreamResponse:
    who = await require_viewer(request)
    console = console_of(request)
    found = await console.stepup.passkeys.passkeys_of(who.name)
    flash = "Security key registered." if request.query.get("done") else ""
    return render(request, "keys.html", viewer=who, keys=found, flash=flash, error="")


async def registration_options(request: web.Request) -> web.StreamResponse:
    who = await require_viewer(request)
    await require_csrf(request, who)
    options = await console_of(request).stepup.registration_options(who.session.id_hash, who.name)
    return web.Response(text=options, content_type="application/json")


async def register(request: web.Request) -> web.StreamResponse:
    who = await require_viewer(request)
    form = await require_csrf(request, who)
    console = console_of(request)
    try:
        await console.stepup.register(
            who.session.id_hash, who.name, form.get("credential", ""), form.get("label", "")
        )
    except (StepUpError, Conflict) as exc:
        found = await console.stepup.passkeys.passkeys_of(who.name)
        return render(
            request, "keys.html", status=400, viewer=who, keys=found, flash="", error=exc.message
        )
    log.info("console: %s registered a security key", who.name)
    raise web.HTTPSeeOther("/console/security-keys?done=1")


async def assertion_options(request: web.Request) -> web.StreamResponse:
    who = await require_viewer(request)
    await require_csrf(request, who)
    console = console_of(request)
    try:
        found = await console.gate.get(request.match_info["id"])
    except NotFound:
        raise web.HTTPNotFound() from None
    if not who.may_decide(found):
        raise web.HTTPNotFound()
    try:
        options = await console.stepup.assertion_options(who.session.id_hash, who.name, found)
    except StepUpError as exc:
        return web.json_response({"error": exc.message}, status=409)
    return web.Response(text=options, content_type="application/json")
