"""Typed application keys shared by the API handlers, and agent authentication."""

from __future__ import annotations

from aiohttp import web

from bot.checkpoints import Checkpointer
from bot.domain import Agent
from bot.errors import NotAuthorized
from bot.service import Gate
from bot.settings import Settings

APP_GATE = web.AppKey("gate", Gate)
APP_SETTINGS = web.AppKey("settings", Settings)
APP_CHECKPOINTS = web.AppKey("checkpoints", Checkpointer)


async def require_agent(request: web.Request) -> Agent:
    """The agent named by ``Authorization: Bearer <token>``. Raises ``NotAuthorized`` (401)
    or ``Forbidden`` (403, suspended)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthorized("send the agent token as Authorization: Bearer <token>")
    return await request.app[APP_GATE].authenticate(token.strip())
