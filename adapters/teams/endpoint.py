"""``POST /api/messages``: the Bot Framework messaging endpoint, as an aiohttp handler.

Order matters: authenticate the bearer token before reading the body (401, nothing else
happens), then parse, check the token's ``serviceurl`` claim against the activity, and check
its shape (``adapters.teams.inbound``: a clear 400 instead of an SDK traceback), and hand
the request to the Agents SDK's ``CloudAdapter.process_request``, which runs ``ApprovalBot``
and answers (an invoke response for card actions, 202 otherwise).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from traceback import format_exception_only
from typing import Any

import pydantic
from aiohttp import web
from microsoft_agents.hosting.aiohttp import CloudAdapter
from microsoft_agents.hosting.core import TurnContext
from microsoft_agents.hosting.core.authorization import ClaimsIdentity

from adapters.teams.auth import InboundAuth
from adapters.teams.bot import ApprovalBot
from adapters.teams.inbound import check_activity
from bot.errors import NotAuthorized, RequestError

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


class _Verified:
    """The SDK's view of an HTTP request (``HttpRequestProtocol``) whose body we already
    parsed and whose token we already verified (what its JWT middleware would attach)."""

    def __init__(self, request: web.Request, body: dict[str, Any], claims: ClaimsIdentity) -> None:
        self._request = request
        self._body = body
        self._claims = claims

    @property
    def method(self) -> str:
        return self._request.method

    @property
    def headers(self) -> Mapping[str, str]:
        return self._request.headers

    async def json(self) -> dict[str, Any]:
        return self._body

    def get_claims_identity(self) -> ClaimsIdentity:
        return self._claims

    def get_path_param(self, name: str) -> str:
        return self._request.match_info[name]


class MessagesEndpoint:
    """The aiohttp handler; ``adapter`` and ``bot`` are the SDK pieces it drives."""

    def __init__(self, adapter: CloudAdapter, bot: ApprovalBot, auth: InboundAuth) -> None:
        self.adapter = adapter
        self.bot = bot
        self.auth = auth
        adapter.on_turn_error = _on_turn_error

    async def handle(self, request: web.Request) -> web.StreamResponse:
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
        try:
            check_activity(body)
        except RequestError as exc:
            log.warning("Teams: activity refused: %s", exc.message)
            return _problem(400, exc.message)
        try:
            result = await self.adapter.process_request(_Verified(request, body, claims), self.bot)
        except pydantic.ValidationError:
            return _problem(400, "not a valid activity")
        return CloudAdapter._to_aiohttp_response(result)


__all__ = ["PATH", "MessagesEndpoint"]
