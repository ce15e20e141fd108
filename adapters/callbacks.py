"""Server side of agent callbacks (SPEC §6 ``callback_url``).

When a request that named a ``callback_url`` becomes final, its JSON (exactly what
``GET /v1/requests/{id}`` answers) is POSTed there, signed per Standard Webhooks with the
asymmetric ``v1a`` scheme and the server's current Ed25519 key (see
``adapters.agent.webhooks`` for the headers and why). Each event has a stable
``webhook-id`` (``<request id>.<status>``) reused on every retry; a delivery is retried
with exponential back-off (bounded: ``DELAYS``) until the receiver answers 2xx (or 410
Gone), and an event already delivered by this process is not sent again.

A callback is a convenience: the decision itself is already recorded and attested, so a
failed delivery is logged and counted, never turned into anything else.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from adapters.agent.webhooks import sign
from bot.api.requests import request_json
from bot.domain import Request, Tier, Verdict
from bot.service import Gate

if TYPE_CHECKING:
    from adapters.main import Runtime

log = logging.getLogger(__name__)

#: waits between attempts: 7 attempts over about 2 minutes
DELAYS: tuple[float, ...] = (1, 2, 4, 8, 16, 32)
ATTEMPT_TIMEOUT = 10.0
_REMEMBERED = 10_000


def webhook_id(request: Request) -> str:
    """Stable per event: one request becomes final once, so id + status names the event."""
    return f"{request.id}.{request.status.value}"


class CallbackSender:
    """Delivers final states to ``callback_url``s. ``sleep`` is injectable for tests."""

    def __init__(
        self,
        gate: Gate,
        *,
        delays: Sequence[float] = DELAYS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        timeout: float = ATTEMPT_TIMEOUT,
    ) -> None:
        self.gate = gate
        self.delays = tuple(delays)
        self.sleep = sleep
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._delivered: OrderedDict[str, None] = OrderedDict()
        self._inflight: set[str] = set()

    def on_final(self, request: Request) -> Awaitable[bool] | None:
        """The ``gate.final_listeners`` hook: the delivery to run, if the agent asked for one."""
        return self.deliver(request) if request.callback_url else None

    async def body(self, request: Request) -> bytes:
        received = 0
        if request.tier is Tier.CONFIRM:
            votes = await self.gate.store.votes(request.id)
            received = sum(1 for v in votes if v.verdict is Verdict.APPROVE)
        return json.dumps(request_json(request, received), separators=(",", ":")).encode()

    async def deliver(self, request: Request) -> bool:
        """POST the final state with retries; True once the receiver accepted it."""
        if not request.callback_url:
            return False
        event = webhook_id(request)
        if event in self._delivered or event in self._inflight:
            return True  # deduplicated: this event is delivered or being delivered
        self._inflight.add(event)
        try:
            body = await self.body(request)
            for attempt in range(len(self.delays) + 1):
                if await self._attempt(request.callback_url, event, body, request.id):
                    self._remember(event)
                    return True
                if attempt < len(self.delays):
                    await self.sleep(self.delays[attempt])
            log.warning(
                "callback for request %s not delivered after %d attempts",
                request.id,
                len(self.delays) + 1,
            )
            return False
        finally:
            self._inflight.discard(event)

    async def _attempt(self, url: str, event: str, body: bytes, request_id: str) -> bool:
        timestamp = int(self.gate.clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            **sign(self.gate.keys, event, timestamp, body),
        }
        try:
            async with self._http().post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                if 200 <= resp.status < 300 or resp.status == 410:
                    return True
                log.info("callback for request %s answered %s", request_id, resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("callback for request %s failed: %s", request_id, type(exc).__name__)
        return False

    def _remember(self, event: str) -> None:
        self._delivered[event] = None
        while len(self._delivered) > _REMEMBERED:
            self._delivered.popitem(last=False)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self, _app: web.Application | None = None) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def mount(runtime: Runtime) -> CallbackSender:
    """Register the callback sender as a final listener of the gate."""
    sender = CallbackSender(runtime.gate)
    runtime.gate.final_listeners.append(sender.on_final)
    runtime.app.on_cleanup.append(sender.close)
    return sender


__all__ = ["DELAYS", "CallbackSender", "mount", "webhook_id"]
