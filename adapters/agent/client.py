"""Clients of the signoff agent API (SPEC §6): submit a tool call, wait for the decision,
report the execution, fetch the public keys.

Two clients with one API: ``AsyncSignoff`` (aiohttp, already a signoff dependency) and
``Signoff`` (the standard library's ``urllib``, so a synchronous agent needs nothing extra).
Every operation is written once in ``adapters.agent.protocol``; the two classes here are the
shells that carry its HTTP exchanges (and long-poll back-off sleeps). Both fail closed: any
transport error, timeout or 5xx raises ``Unavailable`` and nothing is ever treated as
approved.

Raises (every public method): ``Unavailable`` (network, timeout, 5xx), ``ApiError`` (4xx
problem). ``request`` also raises ``Denied``/``Blocked``/``Expired``/``Cancelled`` and
``Pending`` (no decision within ``timeout``).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import aiohttp

from adapters.agent.errors import Unavailable
from adapters.agent.protocol import (
    HTTP_TIMEOUT,
    POLL_SLICE,
    RETRY_DELAYS,
    ClientCore,
    Exchange,
    problem_error,
    read_answer,
    submission,
)
from adapters.agent.steps import Awaiting, Blocking


class AsyncSignoff(Awaiting, ClientCore):
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
        super().__init__(url, token, artifact_digest=artifact_digest)
        self._session = session
        self._own_session = session is None

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

    async def _send(self, exchange: Exchange) -> Any:
        try:
            async with self._http().request(
                exchange.method,
                self.url + exchange.path,
                json=exchange.body,
                headers={**self._headers, **exchange.headers},
                timeout=aiohttp.ClientTimeout(total=exchange.timeout),
            ) as resp:
                body = await resp.read()
                return read_answer(resp.status, body, resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Unavailable(f"{exchange.method} {exchange.path}: {type(exc).__name__}") from exc


class Signoff(Blocking, ClientCore):
    """Synchronous client over ``urllib`` (no extra dependency); same methods as
    ``AsyncSignoff``."""

    def __enter__(self) -> Signoff:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def close(self) -> None:
        return None

    def _send(self, exchange: Exchange) -> Any:
        data = None if exchange.body is None else json.dumps(exchange.body).encode("utf-8")
        headers = {**self._headers, **exchange.headers, "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        # The URL's scheme is checked to be http(s) in __init__ (base_url).
        req = urllib.request.Request(  # noqa: S310
            self.url + exchange.path, data=data, headers=headers, method=exchange.method
        )
        try:
            with urllib.request.urlopen(req, timeout=exchange.timeout) as resp:  # noqa: S310
                return read_answer(resp.status, resp.read(), None)
        except urllib.error.HTTPError as exc:
            raise problem_error(exc.code, exc.read(), exc.headers.get("Retry-After")) from exc
        except (OSError, ValueError) as exc:
            raise Unavailable(f"{exchange.method} {exchange.path}: {type(exc).__name__}") from exc


__all__ = [
    "HTTP_TIMEOUT",
    "POLL_SLICE",
    "RETRY_DELAYS",
    "AsyncSignoff",
    "Signoff",
    "problem_error",
    "submission",
]
