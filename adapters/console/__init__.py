"""The built-in web console (SPEC §8 Console): approver inbox, request detail with Approve
and Deny, the audit browser and the review report, served under ``/console`` by signoff's
own aiohttp server. Server-rendered Jinja2 pages with packaged templates and CSS; no
front-end build step and nothing loaded from another origin.

``mount(runtime)`` adds the console as a sub-application at ``/console`` and its
``ConsoleChannel`` to the gate's channels. Users come from ``signoff users add``
(``adapters.console.cli``); group membership from the policy groups' ``console.users``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from adapters.console import audit, inbox, keys, login, report_page
from adapters.console.app import APP_CONSOLE, Console, make_templates, page_middleware
from adapters.console.channel import ConsoleChannel
from adapters.console.sessions import Sessions
from adapters.console.stepup import StepUp
from adapters.console.throttle import LoginThrottle
from bot.store.passkeys import PasskeyStore
from bot.store.users import UserStore

if TYPE_CHECKING:
    from adapters.main import Runtime

STATIC = Path(__file__).resolve().parent / "static"


async def _to_inbox(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect("/console/")


def create_console(console: Console) -> web.Application:
    app = web.Application(middlewares=[page_middleware])
    app[APP_CONSOLE] = console
    app.add_routes(
        [
            web.get("/", inbox.inbox),
            web.get("/login", login.login_page),
            web.post("/login", login.login),
            web.post("/logout", login.logout),
            web.get("/inbox/changes", inbox.changes),
            web.get("/requests/{id}", inbox.detail),
            web.post("/requests/{id}/decide", inbox.decide),
            web.post("/requests/{id}/step-up/options", keys.assertion_options),
            web.get("/security-keys", keys.keys_page),
            web.post("/security-keys/options", keys.registration_options),
            web.post("/security-keys", keys.register),
            web.get("/audit", audit.audit),
            web.post("/audit/verify", audit.verify),
            web.get("/audit/{index}", audit.entry),
            web.get("/report", report_page.report_page),
            web.static("/static", STATIC),
        ]
    )
    return app


def mount(runtime: Runtime) -> ConsoleChannel:
    """Serve the console at ``/console`` and register its approval channel."""
    users = UserStore(runtime.store)
    channel = ConsoleChannel()
    console = Console(
        gate=runtime.gate,
        users=users,
        sessions=Sessions(users, runtime.settings, runtime.gate),
        throttle=LoginThrottle(users),
        checkpoints=runtime.checkpoints,
        settings=runtime.settings,
        channel=channel,
        templates=make_templates(),
        stepup=StepUp(PasskeyStore(runtime.store), runtime.settings.server.public_url),
    )
    runtime.app.router.add_get("/console", _to_inbox)
    runtime.app.add_subapp("/console", create_console(console))
    runtime.gate.channels.append(channel)
    return channel


__all__ = ["ConsoleChannel", "create_console", "mount"]
