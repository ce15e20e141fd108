"""Find-or-submit by ``Idempotency-Key``: how the framework integrations pick up the request
of a tool call again, in this process or a restarted one.

``GET /v1/requests?idempotency_key=K`` first: an agent that restarted (or resumed a saved run
in another process) finds its pending or decided request without re-sending the body. Only
when there is none is the call submitted. A request found under the key but for another tool
or other arguments is refused (``GrantRefused``), as the server refuses a replay with a
different body (409).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from adapters.agent.client import AsyncSignoff, Signoff
from adapters.agent.errors import ApiError, GrantRefused
from adapters.agent.state import RequestState
from adapters.agent.steps import Steps, awaiting, blocking, invoke
from bot.errors import RequestError
from bot.evidence.canonical import arguments_sha256


def _checked(found: RequestState, tool: str, arguments: Mapping[str, Any]) -> RequestState:
    try:
        same = found.tool == tool and found.arguments_sha256 == arguments_sha256(arguments)
    except RequestError:
        same = False
    if not same:
        raise GrantRefused(tool, "the arguments changed after the request", request_id=found.id)
    return found


def _changed(tool: str, exc: ApiError) -> GrantRefused | ApiError:
    if exc.status == 409:
        return GrantRefused(tool, "the arguments changed after the request")
    return exc


def find_or_submit_steps(
    client: AsyncSignoff | Signoff,
    tool: str,
    arguments: Mapping[str, Any],
    *,
    idempotency_key: str,
    justification: str = "",
    context: Mapping[str, Any] | None = None,
) -> Steps[RequestState]:
    """The request under ``idempotency_key``, else a new one (``arguments`` must be a JSON
    snapshot). Raises ``GrantRefused`` for a key used with other arguments."""
    found = yield invoke(client.find, idempotency_key)
    if found is not None:
        return _checked(found, tool, arguments)
    try:
        submitted = yield invoke(
            client.submit,
            tool,
            arguments,
            justification=justification,
            context=context,
            idempotency_key=idempotency_key,
        )
    except ApiError as exc:
        raise _changed(tool, exc) from exc
    return cast(RequestState, submitted)


#: with an ``AsyncSignoff``
find_or_submit = awaiting(find_or_submit_steps, "find_or_submit")
#: with a ``Signoff``
find_or_submit_sync = blocking(find_or_submit_steps, "find_or_submit_sync")


__all__ = ["find_or_submit", "find_or_submit_steps", "find_or_submit_sync"]
