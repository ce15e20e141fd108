"""PagerDuty Events API v2: the ``bot.ports.Pager`` for escalation pages.

An escalation step with ``page: true`` sends a ``trigger`` whose ``dedup_key`` is unique to
the request (``signoff-<request id>``), so a repeated trigger joins the same incident; when
the request ends (approved, denied, expired, cancelled) a ``resolve`` with the same key closes
it. PagerDuty answers ``202`` when the event is queued; ``429`` and ``5xx`` (and network
errors) are retried with exponential back-off, honouring ``Retry-After`` when given; other
answers (``400`` invalid event) are not retried. Exhausted or refused attempts raise
``ChannelError``. The routing key is a secret and never logged; tool arguments never leave
signoff (only their SHA-256).

Docs: https://developer.pagerduty.com/docs/events-api-v2/trigger-events/ and
https://developer.pagerduty.com/docs/events-api-v2/resolve-events/
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from adapters.runtime import Mounted, Wiring
from bot.domain import Request
from bot.errors import ChannelError, ConfigError
from bot.escalation import ladder
from bot.evidence.statement import rfc3339

log = logging.getLogger(__name__)

DEDUP_PREFIX = "signoff-"
_RETRYABLE = frozenset({429, 500, 502, 503, 504})
_MAX_JUSTIFICATION = 500


def dedup_key(request: Request) -> str:
    """The PagerDuty ``dedup_key`` of a request's incident (≤ 255 characters)."""
    return DEDUP_PREFIX + request.id


def was_paged(request: Request) -> bool:
    """Did a step already run on ``request`` page (so there is an incident to resolve)?"""
    return any(step.page for step in ladder(request)[: request.steps_done])


class PagerDutyPager:
    """``bot.ports.Pager`` over aiohttp. Create inside the event loop's lifetime; ``close``
    when done."""

    def __init__(
        self,
        routing_key: str,
        *,
        events_url: str = "https://events.pagerduty.com/v2/enqueue",
        public_url: str | None = None,
        source: str = "signoff",
        severity: str = "critical",
        attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        timeout: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not routing_key:
            raise ConfigError("pagerduty.routing_key is empty")
        self._routing_key = routing_key
        self.events_url = events_url
        self.public_url = public_url.rstrip("/") if public_url else None
        self.source = source
        self.severity = severity
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None

    def trigger_event(self, request: Request, summary: str) -> dict[str, Any]:
        """The Events API v2 ``trigger`` body for ``request`` (no tool arguments)."""
        call = request.call
        details: dict[str, Any] = {
            "request_id": request.id,
            "tool": call.tool,
            "agent": request.agent_id,
            "artifact_digest": request.artifact_digest,
            "arguments_sha256": request.arguments_sha256,
            "justification": call.justification[:_MAX_JUSTIFICATION],
            "rule": request.policy.rule,
            "policy_version": request.policy.version,
            "policy_digest": request.policy.digest,
            "approver_groups": list(request.approver_groups),
            "created_at": rfc3339(request.created_at),
            "deadline": rfc3339(request.deadline),
        }
        event: dict[str, Any] = {
            "routing_key": self._routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key(request),
            "payload": {
                "summary": summary[:1024],
                "source": self.source,
                "severity": self.severity,
                "component": call.tool,
                "group": request.policy.rule or "default",
                "class": "approval-escalation",
                "custom_details": details,
            },
            "client": "signoff",
        }
        if self.public_url is not None:
            event["client_url"] = f"{self.public_url}/v1/requests/{request.id}"
        return event

    def resolve_event(self, request: Request) -> dict[str, Any]:
        return {
            "routing_key": self._routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key(request),
        }

    async def trigger(self, request: Request, summary: str) -> None:
        """Open (or join) the request's incident. Raises ``ChannelError``."""
        await self._send(self.trigger_event(request, summary), request)

    async def resolve(self, request: Request) -> None:
        """Close the request's incident, if a step paged. Raises ``ChannelError``."""
        if not was_paged(request):
            return
        await self._send(self.resolve_event(request), request)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _send(self, event: dict[str, Any], request: Request) -> None:
        action = event["event_action"]
        delay = self.backoff
        problem = "no attempt made"
        for attempt in range(1, self.attempts + 1):
            wait: float | None = None
            try:
                async with self._client().post(self.events_url, json=event) as response:
                    status = response.status
                    if status == 202 or 200 <= status < 300:
                        log.info("pagerduty %s queued for request %s", action, request.id)
                        return
                    body = (await response.text())[:200]
                    problem = f"HTTP {status}: {body}"
                    if status not in _RETRYABLE:
                        break
                    wait = _retry_after(response.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt < self.attempts:
                pause = min(self.max_backoff, wait if wait is not None else delay)
                log.warning(
                    "pagerduty %s for request %s failed (%s); retry %d in %.1fs",
                    action,
                    request.id,
                    problem,
                    attempt,
                    pause,
                )
                await self._sleep(pause)
                delay = min(self.max_backoff, delay * 2)
        raise ChannelError(f"PagerDuty {action} for request {request.id} failed: {problem}")


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def mount(wiring: Wiring) -> Mounted[PagerDutyPager]:
    """The pager from ``settings.pagerduty``; its HTTP session closes when the server stops
    (after the gate's background work, which may still resolve incidents). Raises
    ``ConfigError``."""
    settings = wiring.settings
    key = settings.pagerduty.routing_key
    if key is None:
        raise ConfigError("pagerduty.routing_key is not set")
    pager = PagerDutyPager(
        key.reveal(),
        events_url=settings.pagerduty.events_url,
        public_url=settings.server.public_url,
    )

    async def close(_: web.Application) -> None:
        await pager.close()  # after the gate's background work (``adapters.main``)

    return Mounted(pager, pager=pager, on_cleanup=(close,))
