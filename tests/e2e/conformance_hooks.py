"""Schemathesis hooks for the conformance run (``SCHEMATHESIS_HOOKS``): a generated, valid
``callback_url`` is pointed at a host under ``.invalid`` (RFC 2606: never resolves) before the
call, so the fuzzed server never POSTs callbacks to real hosts on the internet (the URL stays
schema-valid, so what the server must accept or reject is unchanged)."""

from __future__ import annotations

from typing import Any

import schemathesis

from bot.api.schema import MAX_URL, URL_PATTERN


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    body = case.body
    if isinstance(body, dict):
        url = body.get("callback_url")
        if isinstance(url, str) and len(url) <= MAX_URL and URL_PATTERN.match(url):
            scheme = url.split(":", 1)[0]
            body["callback_url"] = f"{scheme}://callback.invalid/hook"
