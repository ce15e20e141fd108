"""RFC 9457 problem details: the one place where errors become HTTP answers."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from bot.errors import RateLimited, SignoffError

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://signoff.dev/problems/"
PROBLEM_TYPE = "application/problem+json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    429: "rate-limited",
    503: "store-unavailable",
}


def problem(
    status: int,
    slug: str,
    detail: str,
    *,
    errors: Sequence[str] = (),
    headers: dict[str, str] | None = None,
    instance: str | None = None,
) -> web.Response:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": slug.replace("-", " ").capitalize(),
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = list(errors)
    if instance:
        body["instance"] = instance
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type=PROBLEM_TYPE,
        headers=headers,
    )


_PUBLIC_5XX = {
    "store-unavailable": "the store is unavailable; nothing was recorded or allowed (fail-closed)",
    "log-rollback": "the evidence log does not extend its published checkpoint; server stopping",
    "channel": "a chat platform could not be reached",
}


def error_response(request: web.Request, exc: Exception) -> web.Response | None:
    """The problem+json answer for ``exc`` (a ``SignoffError`` or an aiohttp HTTP error), or
    ``None`` when it must propagate unchanged (non-error HTTP exceptions, answers that
    already are problems, anything else)."""
    if isinstance(exc, SignoffError):
        headers = None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(exc.retry_after)}
        detail = exc.message
        if exc.status >= 500:
            # The diagnostics name the database, driver errors, paths: the operator's log
            # gets them, the client a fixed sentence per kind.
            log.warning("%s %s: %s", request.method, request.path, exc.diagnostics())
            detail = _PUBLIC_5XX.get(exc.slug, "the server could not complete the request")
        return problem(
            exc.status,
            exc.slug,
            detail,
            errors=exc.details if exc.status < 500 else (),
            headers=headers,
            instance=request.path,
        )
    if isinstance(exc, web.HTTPException):
        if exc.status < 400 or exc.content_type == PROBLEM_TYPE:
            return None
        slug = _HTTP_SLUGS.get(exc.status, "error")
        detail = exc.reason
        if exc.status == 413:
            detail = "request body is too large"
        allow = exc.headers.get("Allow")
        headers = {"Allow": allow} if allow is not None else None
        return problem(exc.status, slug, detail, headers=headers, instance=request.path)
    return None
