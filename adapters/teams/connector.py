"""Outbound calls to the Bot Connector service through the Agents SDK's connector client.

``Connector`` posts, updates and replies to activities in a conversation at a given service
URL, with a fresh SDK ``TeamsConnectorClient`` per attempt (built by the SDK's
``RestChannelServiceClientFactory``, authenticated as our app). 429, 412, 500, 502, 503, 504,
connection errors and timeouts are retried with exponential back-off, honouring
``Retry-After``; anything else, or running out of attempts, raises ``ChannelError``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import aiohttp
from microsoft_agents.activity import Activity
from microsoft_agents.hosting.core import ChannelServiceClientFactoryBase
from microsoft_agents.hosting.core.authorization import AuthenticationConstants, ClaimsIdentity
from microsoft_agents.hosting.core.connector import ConnectorClientBase

from bot.errors import ChannelError

log = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

RETRY_STATUSES = frozenset({412, 429, 500, 502, 503, 504})


def retry_after(headers: object, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), if any."""
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if not value:
        return None
    text = str(value).strip()
    if text.isdigit():
        return float(text)
    try:
        at = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return max(0.0, (at - (now or datetime.now(UTC))).total_seconds())


class Connector:
    """Posts and updates activities, retrying what the Bot Connector asks us to retry."""

    def __init__(
        self,
        factory: ChannelServiceClientFactoryBase,
        app_id: str,
        *,
        anonymous: bool = False,
        attempts: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        timeout: float = 15.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._factory = factory
        self._app_id = app_id
        self._anonymous = anonymous
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.timeout = timeout
        self._sleep = sleep

    def _identity(self) -> ClaimsIdentity:
        if self._anonymous:
            return ClaimsIdentity()
        return ClaimsIdentity(
            {
                AuthenticationConstants.AUDIENCE_CLAIM: self._app_id,
                AuthenticationConstants.APP_ID_CLAIM: self._app_id,
            }
        )

    async def send(self, service_url: str, conversation_id: str, activity: Activity) -> str:
        """Post ``activity`` as a new message; returns its activity id."""

        async def op(client: ConnectorClientBase) -> str:
            sent = await client.conversations.send_to_conversation(conversation_id, activity)
            return str(sent.id or "")

        activity_id = await self._call(service_url, "post", op)
        if not activity_id:
            raise ChannelError("Teams: the connector did not return an activity id")
        return activity_id

    async def reply(
        self, service_url: str, conversation_id: str, activity_id: str, activity: Activity
    ) -> str:
        """Post ``activity`` in the thread of ``activity_id``; returns the reply's id."""

        async def op(client: ConnectorClientBase) -> str:
            sent = await client.conversations.reply_to_activity(
                conversation_id, activity_id, activity
            )
            return str(sent.id or "")

        return await self._call(service_url, "reply", op)

    async def update(
        self, service_url: str, conversation_id: str, activity_id: str, activity: Activity
    ) -> None:
        """Replace the message ``activity_id`` with ``activity`` (same id)."""
        activity.id = activity_id

        async def op(client: ConnectorClientBase) -> None:
            await client.conversations.update_activity(conversation_id, activity_id, activity)

        await self._call(service_url, "update", op)

    async def _call(
        self, service_url: str, what: str, op: Callable[[ConnectorClientBase], Awaitable[T]]
    ) -> T:
        identity = self._identity()
        for attempt in range(1, self.attempts + 1):
            wait: float | None = None
            client = await self._factory.create_connector_client(
                None,
                identity,
                service_url,
                AuthenticationConstants.AGENTS_SDK_SCOPE,
                use_anonymous=self._anonymous,
            )
            try:
                async with asyncio.timeout(self.timeout):
                    return await op(client)
            except aiohttp.ClientResponseError as exc:
                if exc.status not in RETRY_STATUSES or attempt == self.attempts:
                    raise ChannelError(
                        f"Teams: connector {what} failed with HTTP {exc.status}"
                    ) from exc
                wait = retry_after(exc.headers)
                log.info("Teams: connector %s got HTTP %s; retrying", what, exc.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                if attempt == self.attempts:
                    raise ChannelError(f"Teams: connector {what} failed ({exc!r})") from exc
                log.info("Teams: connector %s failed (%r); retrying", what, exc)
            finally:
                await client.close()
            await self._sleep(self._delay(attempt, wait))
        raise ChannelError(f"Teams: connector {what} failed")  # pragma: no cover

    def _delay(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(retry_after_s, self.max_delay)
        backoff = self.base_delay * 2.0 ** (attempt - 1)
        return min(backoff * (0.5 + random.random() / 2), self.max_delay)  # noqa: S311


__all__ = ["RETRY_STATUSES", "Connector", "retry_after"]
