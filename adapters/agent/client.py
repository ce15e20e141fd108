"""Clients of the signoff agent API (SPEC §6): submit a tool call, wait for the decision,
report the execution, fetch the public keys.

Two clients with one API: ``AsyncSignoff`` (aiohttp, already a signoff dependency) and
``Signoff`` (the standard library's ``urllib``, so a synchronous agent needs nothing extra).
Both fail closed: any transport error, timeout or 5xx raises ``Unavailable`` and nothing is
ever treated as approved.

Raises (every public method): ``Unavailable`` (network, timeout, 5xx), ``ApiError`` (4xx
problem). ``request`` also raises ``Denied``/``Blocked``/``Expired``/``Cancelled`` and
``Pending`` (no decision within ``timeout``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from adapters.agent.errors import ApiError, Pending, Unavailable
from adapters.agent.state import RequestState

log = logging.getLogger(__name__)

#: one long-poll slice; the server caps ``wait`` at 60 s (``server.max_wait_seconds``)
POLL_SLICE = 50.0
#: per-HTTP-call time-out on top of the long-poll slice
HTTP_TIMEOUT = 15.0
#: bounded back-off after a failed long-poll while an overall wait goes on
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)


def _base(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"signoff URL must be an absolute http(s) URL, got {url!r}")
    return url.rstrip("/")


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


def found_request(data: Any) -> RequestState | None:
    """The one request of a ``GET /v1/requests?idempotency_key=K`` answer, or None."""
    items = data.get("requests") if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) > 1:
        raise Unavailable("GET /v1/requests: unexpected answer")
    return RequestState.from_json(items[0]) if items else None


def _pending(state: RequestState, waited: float) -> Pending:
    return Pending(state.tool, state.id, waited)


class AsyncSignoff:
    """Asynchronous client. Use as ``async with AsyncSignoff(url, token) as so: ...`` or
    call ``close()``; pass ``session`` to share an ``aiohttp.ClientSession``."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        session: aiohttp.ClientSession | None = None,
        artifact_digest: str | None = None,
    ) -> None:
        self.url = _base(url)
        self._headers = {"Authorization": f"Bearer {token.strip()}"}
        self._session = session
        self._own_session = session is None
        self.artifact_digest = artifact_digest

    async def __aenter__(self) -> AsyncSignoff:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: float = HTTP_TIMEOUT,  # noqa: ASYNC109 -- per HTTP call, passed to aiohttp
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        all_headers = {**self._headers, **(headers or {})}
        try:
            async with self._http().request(
                method,
                self.url + path,
                json=body,
                headers=all_headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise problem_error(resp.status, raw, resp.headers.get("Retry-After"))
                return json.loads(raw)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Unavailable(f"{method} {path}: {type(exc).__name__}") from exc

    async def submit(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        justification: str = "",
        context: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        artifact_digest: str | None = None,
    ) -> RequestState:
        """Ask signoff about one tool call; auto/notify come back approved with a grant."""
        body = submission(
            tool,
            arguments,
            justification,
            context,
            callback_url,
            artifact_digest or self.artifact_digest,
        )
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return RequestState.from_json(
            await self._call("POST", "/v1/requests", body, headers=headers)
        )

    async def find(self, idempotency_key: str) -> RequestState | None:
        """This agent's request submitted with ``idempotency_key``, or None
        (``GET /v1/requests?idempotency_key=K``): how a restarted agent finds it again."""
        path = "/v1/requests?" + urlencode({"idempotency_key": idempotency_key})
        return found_request(await self._call("GET", path))

    async def get(self, request_id: str, *, wait: float = 0.0) -> RequestState:
        """The request now, or (with ``wait`` ≤ 60) as soon as it is final."""
        path = f"/v1/requests/{request_id}"
        if wait > 0:
            path += f"?wait={wait:g}"
        return RequestState.from_json(await self._call("GET", path, timeout=wait + HTTP_TIMEOUT))

    async def wait(
        self,
        request_id: str,
        *,
        # A budget over many long-polls that returns the pending state when spent, which
        # asyncio.timeout (cancel) cannot express.
        timeout: float = 600.0,  # noqa: ASYNC109
    ) -> RequestState:
        """Long-poll until the request is final or ``timeout`` seconds pass; returns the last
        state (still ``pending`` on time-out). Failed polls are retried with back-off until
        the time is up, then ``Unavailable`` is raised."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        failures = 0
        while True:
            left = end - loop.time()
            try:
                state = await self.get(request_id, wait=max(0.0, min(left, POLL_SLICE)))
            except Unavailable:
                left = end - loop.time()
                if left <= 0:
                    raise
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                log.debug("long-poll of %s failed; retrying in %ss", request_id, delay)
                await asyncio.sleep(min(delay, left))
                continue
            failures = 0
            if state.final or end - loop.time() <= 0:
                return state

    async def request(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        justification: str = "",
        context: Mapping[str, Any] | None = None,
        timeout: float = 600.0,  # noqa: ASYNC109 -- raises Pending (not a cancel) when spent
        idempotency_key: str | None = None,
    ) -> RequestState:
        """Submit and wait; returns the approved state (with its grant). Raises the typed
        refusal, or ``Pending`` when no decision came within ``timeout``."""
        state = await self.submit(
            tool,
            arguments,
            justification=justification,
            context=context,
            idempotency_key=idempotency_key,
        )
        if not state.final:
            state = await self.wait(state.id, timeout=timeout)
        if not state.final:
            raise _pending(state, timeout)
        return state.raise_for_refusal()

    async def cancel(self, request_id: str) -> RequestState:
        return RequestState.from_json(await self._call("POST", f"/v1/requests/{request_id}/cancel"))

    async def report(
        self,
        request_id: str,
        grant: str,
        outcome: str,
        detail: Mapping[str, Any] | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> RequestState:
        """``POST /v1/requests/{id}/execution``; the first ``started`` consumes the grant."""
        body: dict[str, Any] = {"grant": grant, "outcome": outcome, "detail": dict(detail or {})}
        if arguments is not None:
            body["arguments"] = dict(arguments)
        path = f"/v1/requests/{request_id}/execution"
        return RequestState.from_json(await self._call("POST", path, body))

    async def jwks(self) -> dict[str, Any]:
        """``GET /v1/keys``: the public keys grants and attestations verify with."""
        data = await self._call("GET", "/v1/keys")
        if not isinstance(data, dict):
            raise Unavailable("GET /v1/keys: not a JSON object")
        return data


class Signoff:
    """Synchronous client over ``urllib`` (no extra dependency); same methods as
    ``AsyncSignoff``."""

    def __init__(self, url: str, token: str, *, artifact_digest: str | None = None) -> None:
        self.url = _base(url)
        self._headers = {"Authorization": f"Bearer {token.strip()}"}
        self.artifact_digest = artifact_digest

    def __enter__(self) -> Signoff:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def close(self) -> None:
        return None

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: float = HTTP_TIMEOUT,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        all_headers = {**self._headers, **(headers or {}), "Accept": "application/json"}
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        # The URL's scheme is checked to be http(s) in __init__ (_base).
        req = urllib.request.Request(  # noqa: S310
            self.url + path, data=data, headers=all_headers, method=method
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise problem_error(exc.code, exc.read(), exc.headers.get("Retry-After")) from exc
        except (OSError, ValueError) as exc:
            raise Unavailable(f"{method} {path}: {type(exc).__name__}") from exc

    def submit(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        justification: str = "",
        context: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        artifact_digest: str | None = None,
    ) -> RequestState:
        body = submission(
            tool,
            arguments,
            justification,
            context,
            callback_url,
            artifact_digest or self.artifact_digest,
        )
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return RequestState.from_json(self._call("POST", "/v1/requests", body, headers=headers))

    def find(self, idempotency_key: str) -> RequestState | None:
        path = "/v1/requests?" + urlencode({"idempotency_key": idempotency_key})
        return found_request(self._call("GET", path))

    def get(self, request_id: str, *, wait: float = 0.0) -> RequestState:
        path = f"/v1/requests/{request_id}"
        if wait > 0:
            path += f"?wait={wait:g}"
        return RequestState.from_json(self._call("GET", path, timeout=wait + HTTP_TIMEOUT))

    def wait(self, request_id: str, *, timeout: float = 600.0) -> RequestState:
        end = time.monotonic() + timeout
        failures = 0
        while True:
            left = end - time.monotonic()
            try:
                state = self.get(request_id, wait=max(0.0, min(left, POLL_SLICE)))
            except Unavailable:
                left = end - time.monotonic()
                if left <= 0:
                    raise
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                time.sleep(min(delay, left))
                continue
            failures = 0
            if state.final or end - time.monotonic() <= 0:
                return state

    def request(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        justification: str = "",
        context: Mapping[str, Any] | None = None,
        timeout: float = 600.0,
        idempotency_key: str | None = None,
    ) -> RequestState:
        state = self.submit(
            tool,
            arguments,
            justification=justification,
            context=context,
            idempotency_key=idempotency_key,
        )
        if not state.final:
            state = self.wait(state.id, timeout=timeout)
        if not state.final:
            raise _pending(state, timeout)
        return state.raise_for_refusal()

    def cancel(self, request_id: str) -> RequestState:
        return RequestState.from_json(self._call("POST", f"/v1/requests/{request_id}/cancel"))

    def report(
        self,
        request_id: str,
        grant: str,
        outcome: str,
        detail: Mapping[str, Any] | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> RequestState:
        body: dict[str, Any] = {"grant": grant, "outcome": outcome, "detail": dict(detail or {})}
        if arguments is not None:
            body["arguments"] = dict(arguments)
        path = f"/v1/requests/{request_id}/execution"
        return RequestState.from_json(self._call("POST", path, body))

    def jwks(self) -> dict[str, Any]:
        data = self._call("GET", "/v1/keys")
        if not isinstance(data, dict):
            raise Unavailable("GET /v1/keys: not a JSON object")
        return data


__all__ = ["AsyncSignoff", "Signoff", "problem_error", "submission"]
