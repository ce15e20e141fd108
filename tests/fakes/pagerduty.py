"""A fake PagerDuty Events API v2: an aiohttp server on an ephemeral port.

``POST /v2/enqueue`` validates events the way PagerDuty documents them (``routing_key``,
``event_action`` trigger/acknowledge/resolve, ``dedup_key`` ≤ 255, and for ``trigger`` a
``payload`` with ``summary`` ≤ 1024, ``source`` and ``severity`` critical/error/warning/info):
``400`` with ``{"status": "invalid event", "errors": [...]}`` when wrong, ``202`` with
``{"status": "success", "message": "Event processed", "dedup_key": …}`` when queued. Faults
(``429``, ``5xx``) can be queued with ``inject``, or answered to everything for a while
(``outage``). Every attempt is recorded; ``incidents`` tracks open/resolved incidents by
``dedup_key``; ``wait_for`` waits without sleeping blindly.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")

SEVERITIES = frozenset({"critical", "error", "warning", "info"})
ACTIONS = frozenset({"trigger", "acknowledge", "resolve"})


@dataclass
class Attempt:
    """One POST as received: its decoded body and the status the fake answered."""

    body: Any
    status: int
    at: float


class FakePagerDuty:
    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self.incidents: dict[str, str] = {}  # dedup_key -> "triggered" | "resolved"
        self._faults: deque[int] = deque()
        self._outage_until = 0.0
        self._outage: Iterator[int] = iter(())
        self.hang = 0.0  # how long an outage's status 0 (a time-out) holds the request
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    def inject(self, *statuses: int) -> None:
        """Answer the next requests with these statuses (e.g. ``429, 503``), then normally."""
        self._faults.extend(statuses)

    def outage(self, seconds: float, statuses: Sequence[int], hang: float = 12.0) -> None:
        """For ``seconds`` from now, answer every event with the next of ``statuses`` in turn;
        ``0`` holds the request ``hang`` seconds (past the client's time-out), then 503."""
        self._outage_until = time.monotonic() + seconds
        self._outage = itertools.cycle(statuses)
        self.hang = hang

    @property
    def events(self) -> list[dict[str, Any]]:
        """Events that were accepted (202), oldest first."""
        return [a.body for a in self.attempts if a.status == 202]

    def accepted(self, action: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event_action") == action]

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v2/enqueue", self._enqueue)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/v2/enqueue"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float = 5.0) -> T:
        async with asyncio.timeout(timeout):
            while True:
                found = predicate()
                if found:
                    return found
                self._changed.clear()
                await self._changed.wait()

    async def _enqueue(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if time.monotonic() < self._outage_until and not self._faults:
            fault = next(self._outage)
            if fault == 0:
                await asyncio.sleep(self.hang)
            self._faults.append(fault or 503)
        status, answer = self._answer(body)
        self.attempts.append(Attempt(body, status, time.monotonic()))
        if status == 202 and isinstance(body, dict):
            key = str(body["dedup_key"])
            if body["event_action"] == "trigger":
                self.incidents[key] = "triggered"
            elif body["event_action"] == "resolve" and key in self.incidents:
                self.incidents[key] = "resolved"
        self._changed.set()
        return web.json_response(answer, status=status)

    def _answer(self, body: Any) -> tuple[int, dict[str, Any]]:
        if self._faults:
            status = self._faults.popleft()
            if status == 429:
                return 429, {
                    "status": "throttle event",
                    "message": "Requests for this service are arriving too quickly",
                }
            return status, {"status": "error", "message": "internal error"}
        errors = problems(body)
        if errors:
            return 400, {
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": errors,
            }
        return 202, {
            "status": "success",
            "message": "Event processed",
            "dedup_key": body["dedup_key"],
        }


def problems(body: Any) -> list[str]:
    """Why PagerDuty would reject ``body`` (empty when it is a valid event)."""
    if not isinstance(body, dict):
        return ["Event object must be a JSON object"]
    errors = []
    if not isinstance(body.get("routing_key"), str) or not body["routing_key"]:
        errors.append("'routing_key' is missing or blank")
    action = body.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is invalid (must be trigger, acknowledge or resolve)")
    key = body.get("dedup_key")
    if action in ("acknowledge", "resolve") and not key:
        errors.append("'dedup_key' is required to acknowledge or resolve")
    if key is not None and (not isinstance(key, str) or len(key) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action == "trigger":
        payload = body.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "'payload' is missing"]
        summary = payload.get("summary")
        if not isinstance(summary, str) or not summary or len(summary) > 1024:
            errors.append("'payload.summary' must be 1-1024 characters")
        if not isinstance(payload.get("source"), str) or not payload["source"]:
            errors.append("'payload.source' is missing or blank")
        if payload.get("severity") not in SEVERITIES:
            errors.append("'payload.severity' must be critical, error, warning or info")
        details = payload.get("custom_details")
        if details is not None and not isinstance(details, dict):
            errors.append("'payload.custom_details' must be an object")
    return errors
