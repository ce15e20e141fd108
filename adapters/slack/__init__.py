"""The Slack adapter (SPEC §8): approval cards, authorised clicks, cards kept up to date.

``mount(wiring)`` is called by the composition root when ``slack.bot_token`` is set. It builds
slack_sdk's ``AsyncWebClient`` (with retries) at ``slack.api_base_url`` and returns the
``SlackChannel``, the slack-bolt app behind ``POST /slack/events`` (when
``slack.signing_secret`` is set) and, when ``slack.app_token`` is set, a Socket Mode
connection as a background job. This package may import ``bot`` and the Slack SDKs; ``bot``
never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from slack_sdk.http_retry.interval_calculator import RetryIntervalCalculator

from adapters.runtime import Mounted, Wiring
from adapters.slack.channel import SlackChannel
from adapters.slack.client import PooledSession, make_client
from adapters.slack.directory import Directory
from adapters.slack.events import PATH, SlackEvents
from adapters.slack.interactions import Interactions
from bot.errors import ConfigError
from bot.settings import SlackSettings

log = logging.getLogger(__name__)

__all__ = ["PATH", "SlackAdapter", "SlackChannel", "mount"]


@dataclass
class SlackAdapter:
    """Everything the Slack adapter runs, for tests."""

    channel: SlackChannel
    interactions: Interactions
    events: SlackEvents | None
    session: PooledSession

    async def drain(self) -> None:
        await self.interactions.drain()


def mount(
    wiring: Wiring, *, retry_interval: RetryIntervalCalculator | None = None
) -> Mounted[SlackAdapter]:
    """Slack's channel, routes and jobs. Raises ``ConfigError`` when the settings cannot
    work."""
    settings: SlackSettings = wiring.settings.slack
    if not settings.bot_token:
        raise ConfigError("slack.bot_token is not set, so the Slack adapter cannot start")
    if not settings.signing_secret and not settings.app_token:
        raise ConfigError(
            "slack.signing_secret is required to verify Slack's requests "
            "(or set slack.app_token to use Socket Mode)"
        )
    gate = wiring.gate
    public_url = wiring.settings.server.public_url
    client = make_client(
        settings.bot_token.reveal(), settings.api_base_url, interval=retry_interval
    )
    session = PooledSession(client)
    directory = Directory(client, ttl=settings.usergroup_ttl.total_seconds())
    channel = SlackChannel(
        gate,
        client,
        escalation_channel=settings.escalation_channel,
        console_url=public_url,
        on_undeliverable=wiring.undeliverable,
    )
    secret = settings.signing_secret.reveal() if settings.signing_secret else ""
    interactions = Interactions(
        gate, client, directory, signing_secret=secret, console_url=public_url
    )
    events = SlackEvents(interactions.app, secret) if settings.signing_secret else None
    jobs = (_socket_mode(interactions, settings.app_token.reveal()),) if settings.app_token else ()

    async def close(_: web.Application) -> None:
        # Finish clicks still in flight before the pool goes away, then what they started
        # (the gate's earlier work was drained first: ``adapters.main``).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await interactions.drain()
        await gate.drain()
        await session.close()

    log.info("Slack adapter on (%s)", "Socket Mode" if settings.app_token else f"HTTP at {PATH}")
    return Mounted(
        SlackAdapter(channel, interactions, events, session),
        channel=channel,
        routes=tuple(events.routes()) if events is not None else (),
        jobs=jobs,
        on_startup=(session.open,),
        on_cleanup=(close,),
    )


def _socket_mode(
    interactions: Interactions, app_token: str
) -> Callable[[], Coroutine[Any, Any, None]]:
    """A background job holding a Socket Mode connection (payloads arrive over the socket,
    authenticated by the app-level token, instead of over ``/slack/events``)."""

    async def run() -> None:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        handler = AsyncSocketModeHandler(interactions.app, app_token)
        await handler.connect_async()  # type: ignore[no-untyped-call]
        try:
            await asyncio.Event().wait()
        finally:
            with contextlib.suppress(Exception):
                await handler.close_async()  # type: ignore[no-untyped-call]

    return run
