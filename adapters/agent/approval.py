"""Run a tool only with a verified grant: ``require_approval`` and the ``Approvals`` helpers
the framework integrations share.

The sequence for one call (SPEC §6, §7):

1. submit ``tool`` + ``arguments`` (+ justification, context) and wait for the decision;
2. a refusal raises ``Denied``/``Blocked``/``Expired``/``Cancelled`` (text fit for a model),
   no decision in time raises ``Pending``;
3. verify the grant **offline** against the exact arguments about to be used (a fresh JSON
   snapshot taken just before the call) and the server's JWKS -- arguments changed after
   approval raise ``GrantRefused`` and need a new request;
4. report ``started`` with the grant (this consumes it; a second use is refused by the
   server), call the function, then report ``succeeded`` or ``failed`` with a small detail
   (never the function's output unless ``detail`` says so).

The function is never called without a valid, unused grant.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, TypeVar, cast

from adapters.agent.client import AsyncSignoff, Signoff
from adapters.agent.errors import ApiError, GrantRefused, Unavailable
from adapters.agent.grants import AsyncGrantVerifier, GrantVerifier
from adapters.agent.state import RequestState

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
Detail = Callable[[Any], Mapping[str, Any]]
Text = str | Callable[[Mapping[str, Any]], str]

DEFAULT_TIMEOUT = 600.0


def json_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON snapshot (deep copy) of ``arguments``. Raises ``TypeError`` when a value is
    not JSON (signoff hashes and shows the exact arguments, so they must be JSON)."""
    try:
        snapshot = json.loads(json.dumps(dict(arguments), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"tool arguments must be JSON-serialisable: {exc}") from exc
    return cast(dict[str, Any], snapshot)


def bound_arguments(
    signature: inspect.Signature, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> inspect.BoundArguments:
    """Bind a call like the function would, with defaults applied."""
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return bound


def _error_detail(exc: BaseException) -> dict[str, Any]:
    return {"error": type(exc).__name__}


def _grant(state: RequestState, tool: str) -> str:
    if state.grant is None:
        raise GrantRefused(tool, "the request carries no grant", request_id=state.id)
    return state.grant


def _started_refusal(exc: ApiError, tool: str, request_id: str) -> GrantRefused:
    if exc.status == 409:
        return GrantRefused(tool, "the grant was already used", request_id=request_id)
    return GrantRefused(tool, exc.detail, request_id=request_id)


class AsyncApprovals:
    """Approve-then-run with an ``AsyncSignoff`` client and an offline grant verifier."""

    def __init__(
        self,
        client: AsyncSignoff,
        *,
        verifier: AsyncGrantVerifier | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.client = client
        self.verifier = verifier or AsyncGrantVerifier(client.jwks)
        self.timeout = timeout

    async def approve(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        justification: str = "",
        context: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> RequestState:
        """Submit and wait for approval; returns the approved state or raises the refusal."""
        return await self.client.request(
            tool,
            arguments,
            justification=justification,
            context=context,
            timeout=self.timeout,
            idempotency_key=idempotency_key,
        )

    async def run(
        self,
        state: RequestState,
        tool: str,
        arguments: Mapping[str, Any],
        call: Callable[[], Awaitable[T]],
        *,
        detail: Detail | None = None,
    ) -> T:
        """Verify ``state``'s grant for ``tool(arguments)``, consume it, run ``call`` and
        report the outcome. Raises ``GrantRefused`` (nothing ran) or what ``call`` raises."""
        snapshot = json_arguments(arguments)
        await self.verifier.verify(state, tool, snapshot)
        try:
            # The server checks the grant against these arguments too before consuming it.
            await self.client.report(state.id, _grant(state, tool), "started", arguments=snapshot)
        except ApiError as exc:
            raise _started_refusal(exc, tool, state.id) from exc
        try:
            result = await call()
        except Exception as exc:
            await self._report(state, "failed", _error_detail(exc))
            raise
        await self._report(state, "succeeded", dict(detail(result)) if detail else {})
        return result

    async def call(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        call: Callable[[], Awaitable[T]],
        *,
        justification: str = "",
        context: Mapping[str, Any] | None = None,
        detail: Detail | None = None,
        idempotency_key: str | None = None,
    ) -> T:
        """``approve`` then ``run``."""
        state = await self.approve(
            tool,
            json_arguments(arguments),
            justification=justification,
            context=context,
            idempotency_key=idempotency_key,
        )
        return await self.run(state, tool, arguments, call, detail=detail)

    async def _report(self, state: RequestState, outcome: str, detail: Mapping[str, Any]) -> None:
        try:
            await self.client.report(state.id, _grant(state, state.tool), outcome, detail)
        except (ApiError, Unavailable, GrantRefused) as exc:
            # The function already ran; losing the outcome record must not hide its result.
            log.warning("could not report %s for request %s: %s", outcome, state.id, exc)


class Approvals:
    """Synchronous twin of ``AsyncApprovals`` over a ``Signoff`` client."""

    def __init__(
        self,
        client: Signoff,
        *,
        verifier: GrantVerifier | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.client = client
        self.verifier = verifier or GrantVerifier(client.jwks)
        self.timeout = timeout

    def approve(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        justification: str = "",
        context: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> RequestState:
        return self.client.request(
            tool,
            arguments,
            justification=justification,
            context=context,
            timeout=self.timeout,
            idempotency_key=idempotency_key,
        )

    def run(
        self,
        state: RequestState,
        tool: str,
        arguments: Mapping[str, Any],
        call: Callable[[], T],
        *,
        detail: Detail | None = None,
    ) -> T:
        snapshot = json_arguments(arguments)
        self.verifier.verify(state, tool, snapshot)
        try:
            self.client.report(state.id, _grant(state, tool), "started", arguments=snapshot)
        except ApiError as exc:
            raise _started_refusal(exc, tool, state.id) from exc
        try:
            result = call()
        except Exception as exc:
            self._report(state, "failed", _error_detail(exc))
            raise
        self._report(state, "succeeded", dict(detail(result)) if detail else {})
        return result

    def call(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        call: Callable[[], T],
        *,
        justification: str = "",
        context: Mapping[str, Any] | None = None,
        detail: Detail | None = None,
        idempotency_key: str | None = None,
    ) -> T:
        state = self.approve(
            tool,
            json_arguments(arguments),
            justification=justification,
            context=context,
            idempotency_key=idempotency_key,
        )
        return self.run(state, tool, arguments, call, detail=detail)

    def _report(self, state: RequestState, outcome: str, detail: Mapping[str, Any]) -> None:
        try:
            self.client.report(state.id, _grant(state, state.tool), outcome, detail)
        except (ApiError, Unavailable, GrantRefused) as exc:
            log.warning("could not report %s for request %s: %s", outcome, state.id, exc)


def _text(value: Text, arguments: Mapping[str, Any]) -> str:
    return value(arguments) if callable(value) else value


def require_approval(
    client: AsyncSignoff | Signoff | AsyncApprovals | Approvals,
    *,
    tool: str | None = None,
    justification: Text = "",
    context: Mapping[str, Any] | None = None,
    detail: Detail | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorate a tool function so every call needs a signoff grant.

    The request is built from ``tool`` (default: the function's name) and the call's bound
    arguments (defaults applied; must be JSON). ``justification`` may be a string or a
    function of the arguments; callers can also pass ``signoff_justification=`` and
    ``signoff_context=`` keyword arguments per call (they are not passed on). Use an
    ``AsyncSignoff``/``AsyncApprovals`` for ``async def`` functions and a ``Signoff``/
    ``Approvals`` for plain ones.

    The wrapped function raises ``Denied``, ``Blocked``, ``Expired``, ``Cancelled``,
    ``Pending``, ``GrantRefused``, ``Unavailable``, ``ApiError`` without calling the tool.
    """

    def decorate(func: Callable[P, T]) -> Callable[P, T]:
        name = tool or func.__name__
        signature = inspect.signature(func)

        def prepare(
            args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[inspect.BoundArguments, str, dict[str, Any]]:
            reason = kwargs.pop("signoff_justification", None)
            extra = kwargs.pop("signoff_context", None) or {}
            bound = bound_arguments(signature, args, kwargs)
            why = reason if isinstance(reason, str) else _text(justification, bound.arguments)
            return bound, why, {**(context or {}), **extra}

        if inspect.iscoroutinefunction(func):
            if isinstance(client, AsyncApprovals):
                approvals_a = client
            elif isinstance(client, AsyncSignoff):
                approvals_a = AsyncApprovals(client, timeout=timeout)
            else:
                raise TypeError("an async tool needs an AsyncSignoff client")

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                bound, why, ctx = prepare(args, kwargs)

                async def invoke() -> Any:
                    return await cast(Callable[..., Awaitable[Any]], func)(
                        *bound.args, **bound.kwargs
                    )

                return await approvals_a.call(
                    name, bound.arguments, invoke, justification=why, context=ctx, detail=detail
                )

            return cast(Callable[P, T], run_async)

        if isinstance(client, Approvals):
            approvals_s = client
        elif isinstance(client, Signoff):
            approvals_s = Approvals(client, timeout=timeout)
        else:
            raise TypeError("a synchronous tool needs a Signoff client")

        @functools.wraps(func)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            bound, why, ctx = prepare(args, kwargs)
            return approvals_s.call(
                name,
                bound.arguments,
                lambda: func(*bound.args, **bound.kwargs),
                justification=why,
                context=ctx,
                detail=detail,
            )

        return cast(Callable[P, T], run_sync)

    return decorate


__all__ = [
    "Approvals",
    "AsyncApprovals",
    "bound_arguments",
    "json_arguments",
    "require_approval",
]
