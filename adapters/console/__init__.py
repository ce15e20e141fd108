"""The built-in web console (SPEC §8 Console): approver inbox, request detail with Approve
and Deny, the audit browser and the review report, served under ``/console`` by signoff's
own aiohttp server. Server-rendered Jinja2 pages with packaged templates and CSS; no
front-end build step and nothing loaded from another origin.

``mount(wiring)`` returns the console as a sub-application for ``/console`` and its
``ConsoleChannel``. Users come from ``signoff users add``
(``adapters.users_cli``); group membership from the policy groups' ``console.users``.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from adapters.console import audit, inbox, keys, login, report_page
from adapters.console.app import APP_CONSOLE, Console, make_templates, page_middleware
from adapters.console.channel import ConsoleChannel
from adapters.console.sessions import Sessions
from adapters.console.stepup import StepUp
from adapters.console.throttle import LoginThrottle
from adapters.runtime import Mounted, Wiring

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


def mount(wiring: Wiring) -> Mounted[ConsoleChannel]:
    """The console at ``/console`` and its approval channel."""
    channel = ConsoleChannel()
    console = Console(
        gate=wiring.gate,
        users=wiring.users,
        sessions=Sessions(wiring.users, wiring.settings, wiring.gate),
        throttle=LoginThrottle(wiring.users),
        checkpoints=wiring.checkpoints,
        settings=wiring.settings,
        channel=channel,
        templates=make_templates(),
        stepup=StepUp(wiring.passkeys, wiring.settings.server.public_url),
    )
    return Mounted(
        channel,
        channel=channel,
        routes=(web.get("/console", _to_inbox),),
        subapps=(("/console", create_console(console)),),
    )


__all__ = ["ConsoleChannel", "create_console", "mount"]
