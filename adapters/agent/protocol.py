"""The agent API (SPEC §6) without I/O: how each call is built, how each answer is read, and
the client operations as steps (``adapters.agent.steps``) that both clients run.

Owns the request bodies and paths, the mapping of an error answer to ``Unavailable``/
``ApiError``, and the long-poll budget (``LongPoll``: how long the next poll may wait and
how long to back off after a failure, as pure state). Must not import aiohttp or urllib:
the shells in ``adapters.agent.client`` do the HTTP.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from adapters.agent.errors import ApiError, Pending, Unavailable
from adapters.agent.state import RequestState
from adapters.agent.steps import Invoke, Operation, Sleep, Steps, invoke

log = logging.getLogger(__name__)

#: one long-poll slice; the server caps ``wait`` at 60 s (``server.max_wait_seconds``)
POLL_SLICE = 50.0
#: per-HTTP-call time-out on top of the long-poll slice
HTTP_TIMEOUT = 15.0
#: bounded back-off after a failed long-poll while an overall wait goes on
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)


def base_url(url: str) -> str:
    """``url`` without a trailing slash. Raises ``ValueError`` unless it is absolute http(s)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"signoff URL must be an absolute http(s) URL, got {url!r}")
    return url.rstrip("/")


@dataclass(frozen=True, slots=True)
class Exchange:
    """One HTTP call to signoff: what a shell sends (JSON body, extra headers, time-out)."""

    method: str
    path: str
    body: Any = None
    timeout: float = HTTP_TIMEOUT
    headers: Mapping[str, str] = field(default_factory=dict)


def submission(
    tool: str,
    arguments: Mapping[str, Any],
    justification: str,
    context: Mapping[str, Any] | None,
    callback_url: str | None,
    artifact_digest: str | None,
) -> dict[str, Any]:
    """The ``POST /v1/requests`` body."""
    body: dict[str, Any] = {
        "tool": tool,
        "arguments": dict(arguments),
        "justification": justification,
        "context": dict(context or {}),
    }
    if callback_url:
        body["callback_url"] = callback_url
    if artifact_digest:
        body["artifact_digest"] = artifact_digest
    return body


def problem_error(status: int, body: bytes, retry_after: str | None) -> ApiError | Unavailable:
    """Turn an error answer into ``Unavailable`` (5xx) or ``ApiError`` (4xx problem)."""
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    detail = str(data.get("detail") or data.get("title") or f"HTTP {status}")
    if status >= 500:
        return Unavailable(f"HTTP {status}: {detail}")
    errors = data.get("errors")
    return ApiError(
        status,
        detail,
        type=str(data.get("type") or ""),
        errors=tuple(str(e) for e in errors) if isinstance(errors, list) else (),
        retry_after=int(retry_after) if retry_after and retry_after.isdigit() else None,
    )


def read_answer(status: int, body: bytes, retry_after: str | None) -> Any:
    """The JSON of an answer. Raises ``problem_error`` for a 4xx/5xx, ``ValueError`` when
    the body is not JSON (the shells turn that into ``Unavailable``)."""
    if status >= 400:
        raise problem_error(status, body, retry_after)
    return json.loads(body)


def found_request(data: Any) -> RequestState | None:
    """The one request of a ``GET /v1/requests?idempotency_key=K`` answer, or None."""
    items = data.get("requests") if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) > 1:
        raise Unavailable("GET /v1/requests: unexpected answer")
    return RequestState.from_json(items[0]) if items else None


@dataclass(slots=True)
class LongPoll:
    """An overall wait made of long-polls: each poll waits at most the time left (and one
    slice); a failed poll backs off along ``RETRY_DELAYS`` while time is left."""

    end: float
    failures: int = 0

    def slice(self, now: float) -> float:
        """How long the next poll may wait on the server."""
        return max(0.0, min(self.end - now, POLL_SLICE))

    def backoff(self, now: float) -> float | None:
        """How long to wait after a failed poll, or None when the time is up (give up)."""
        left = self.end - now
        if left <= 0:
            return None
        delay = RETRY_DELAYS[min(self.failures, len(RETRY_DELAYS) - 1)]
        self.failures += 1
        return min(delay, left)

    def settled(self, state: RequestState, now: float) -> bool:
        """After a poll answered: whether the wait is over (final, or time is up)."""
        self.failures = 0
        return state.final or self.end - now <= 0


# The operations of both clients (``ClientCore`` makes them methods of both shells).


def submit(
    client: ClientCore,
    tool: str,
    arguments: Mapping[str, Any],
    *,
    justification: str = "",
    context: Mapping[str, Any] | None = None,
    callback_url: str | None = None,
    idempotency_key: str | None = None,
    artifact_digest: str | None = None,
) -> Steps[RequestState]:
    """Ask signoff about one tool call; auto/notify come back approved with a grant."""
    body = submission(
        tool,
        arguments,
        justification,
        context,
        callback_url,
        artifact_digest or client.artifact_digest,
    )
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return RequestState.from_json(
        (yield client.exchange("POST", "/v1/requests", body, headers=headers))
    )


def find(client: ClientCore, idempotency_key: str) -> Steps[RequestState | None]:
    """This agent's request submitted with ``idempotency_key``, or None
    (``GET /v1/requests?idempotency_key=K``): how a restarted agent finds it again."""
    path = "/v1/requests?" + urlencode({"idempotency_key": idempotency_key})
    return found_request((yield client.exchange("GET", path)))


def get(client: ClientCore, request_id: str, *, wait: float = 0.0) -> Steps[RequestState]:
    """The request now, or (with ``wait`` ≤ 60) as soon as it is final."""
    path = f"/v1/requests/{request_id}"
    if wait > 0:
        path += f"?wait={wait:g}"
    answer = yield client.exchange("GET", path, timeout=wait + HTTP_TIMEOUT)
    return RequestState.from_json(answer)


def wait(client: ClientCore, request_id: str, *, timeout: float = 600.0) -> Steps[RequestState]:
    """Long-poll until the request is final or ``timeout`` seconds pass; returns the last
    state (still ``pending`` on time-out). Failed polls are retried with back-off until
    the time is up, then ``Unavailable`` is raised."""
    poll = LongPoll(time.monotonic() + timeout)
    while True:
        try:
            state = yield from get(client, request_id, wait=poll.slice(time.monotonic()))
        except Unavailable:
            delay = poll.backoff(time.monotonic())
            if delay is None:
                raise
            log.debug("long-poll of %s failed; retrying in %ss", request_id, delay)
            yield Sleep(delay)
            continue
        if poll.settled(state, time.monotonic()):
            return state


def request(
    client: ClientCore,
    tool: str,
    arguments: Mapping[str, Any],
    *,
    justification: str = "",
    context: Mapping[str, Any] | None = None,
    timeout: float = 600.0,
    idempotency_key: str | None = None,
) -> Steps[RequestState]:
    """Submit and wait; returns the approved state (with its grant). Raises the typed
    refusal, or ``Pending`` when no decision came within ``timeout``."""
    state = yield from submit(
        client,
        tool,
        arguments,
        justification=justification,
        context=context,
        idempotency_key=idempotency_key,
    )
    if not state.final:
        state = yield from wait(client, state.id, timeout=timeout)
    if not state.final:
        raise Pending(state.tool, state.id, timeout)
    return state.raise_for_refusal()


def cancel(client: ClientCore, request_id: str) -> Steps[RequestState]:
    """``POST /v1/requests/{id}/cancel``: withdraw a pending request."""
    return RequestState.from_json(
        (yield client.exchange("POST", f"/v1/requests/{request_id}/cancel"))
    )


def report(
    client: ClientCore,
    request_id: str,
    grant: str,
    outcome: str,
    detail: Mapping[str, Any] | None = None,
    arguments: Mapping[str, Any] | None = None,
) -> Steps[RequestState]:
    """``POST /v1/requests/{id}/execution``; the first ``started`` consumes the grant."""
    body: dict[str, Any] = {"grant": grant, "outcome": outcome, "detail": dict(detail or {})}
    if arguments is not None:
        body["arguments"] = dict(arguments)
    path = f"/v1/requests/{request_id}/execution"
    return RequestState.from_json((yield client.exchange("POST", path, body)))


def jwks(client: ClientCore) -> Steps[dict[str, Any]]:
    """``GET /v1/keys``: the public keys grants and attestations verify with."""
    data = yield client.exchange("GET", "/v1/keys")
    if not isinstance(data, dict):
        raise Unavailable("GET /v1/keys: not a JSON object")
    return data


class ClientCore:
    """What both clients share: the server URL, the agent's credential and artifact digest,
    and every method (the operations above). Shells implement ``_send`` (perform one
    ``Exchange``, return the answer's JSON; raise ``Unavailable`` or ``ApiError``)."""

    def __init__(self, url: str, token: str, *, artifact_digest: str | None = None) -> None:
        self.url = base_url(url)
        self._headers = {"Authorization": f"Bearer {token.strip()}"}
        self.artifact_digest = artifact_digest

    def _send(self, exchange: Exchange) -> Any:
        raise NotImplementedError

    def exchange(self, method: str, path: str, body: Any = None, **options: Any) -> Invoke:
        """The step that sends one HTTP call through this client's shell."""
        return invoke(self._send, Exchange(method, path, body, **options))

    submit = Operation(submit)
    find = Operation(find)
    get = Operation(get)
    wait = Operation(wait)
    request = Operation(request)
    cancel = Operation(cancel)
    report = Operation(report)
    jwks = Operation(jwks)


__all__ = [
    "HTTP_TIMEOUT",
    "POLL_SLICE",
    "RETRY_DELAYS",
    "ClientCore",
    "Exchange",
    "LongPoll",
    "base_url",
    "found_request",
    "problem_error",
    "read_answer",
    "submission",
]
