"""``POST /api/messages``: the Bot Framework messaging endpoint, as an aiohttp handler.

Order matters: authenticate the bearer token before reading the body (401, nothing else
happens), then parse, check the token's ``serviceurl`` claim against the activity, and hand
the request to the Agents SDK's ``CloudAdapter``, which runs ``ApprovalBot`` and writes the
response (an invoke response for card actions, 202 otherwise).
"""

from __future__ import annotations

import logging
from traceback import format_exception_only

import pydantic
from aiohttp import web
from microsoft_agents.hosting.aiohttp import CloudAdapter
from microsoft_agents.hosting.core import TurnContext

from adapters.teams.auth import InboundAuth
from adapters.teams.bot import ApprovalBot
from bot.errors import NotAuthorized

log = logging.getLogger(__name__)

PATH = "/api/messages"


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _on_turn_error(context: TurnContext, error: Exception) -> None:
    """Log the failure; never echo internals into the conversation (the SDK's default
    prints a traceback to stdout and posts the exception text to the chat)."""
    log.error(
        "Teams: turn failed for a %s activity: %s",
        context.activity.type if context.activity is not None else "?",
        "".join(format_exception_only(type(error), error)).strip(),
        exc_info=error,
    )


class MessagesEndpoint:
    """The aiohttp handler; ``adapter`` and ``bot`` are the SDK pieces it drives."""

    def __init__(self, adapter: CloudAdapter, bot: ApprovalBot, auth: InboundAuth) -> None:
        self.adapter = adapter
        self.bot = bot
        self.auth = auth
        adapter.on_turn_error = _on_turn_error

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        try:
            claims = await self.auth.identify(request.headers.get("Authorization"))
        except NotAuthorized:
            return _problem(401, "Invalid token or authentication failed.")
        if request.content_type != "application/json":
            return _problem(415, "activities are JSON")
        try:
            body = await request.json()
        except ValueError:
            return _problem(400, "the body is not JSON")
        if not isinstance(body, dict):
            return _problem(400, "an activity is a JSON object")
        try:
            self.auth.check_service_url(claims, body.get("serviceUrl"))
        except NotAuthorized:
            return _problem(401, "Invalid token or authentication failed.")
        request["claims_identity"] = claims
        try:
            response = await self.adapter.process(request, self.bot)
        except pydantic.ValidationError:
            return _problem(400, "not a valid activity")
        return response if response is not None else web.Response(status=202)


__all__ = ["PATH", "MessagesEndpoint"]
