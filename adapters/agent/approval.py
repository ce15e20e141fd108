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

When an approver edited the arguments (rule option ``editable``), the answer carries
``approved_arguments`` and the grant binds them: the tool runs with the approved arguments,
never the original ones, and the log says so with both digests (``adopt``). A caller that
cannot run other arguments (no ``edited`` hook) gets ``GrantRefused``.

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
from bot.evidence.canonical import arguments_sha256

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
Detail = Callable[[Any], Mapping[str, Any]]
Text = str | Callable[[Mapping[str, Any]], str]
C = TypeVar("C")

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


def adopt(
    state: RequestState,
    tool: str,
    arguments: Mapping[str, Any],
    rebind: Callable[[dict[str, Any]], C] | None,
) -> tuple[Mapping[str, Any], C | None]:
    """The arguments to run and the call to make: the approver's edit when there is one
    (logged with both digests), else ``arguments`` unchanged (``rebind`` unused). Raises
    ``GrantRefused`` for an edit when ``rebind`` is None (the caller cannot run it)."""
    approved = state.approved_arguments
    if approved is None:
        return arguments, None
    if rebind is None:
        raise GrantRefused(
            tool,
            "an approver edited the arguments and this caller cannot run edited arguments",
            request_id=state.id,
        )
    edited = json_arguments(approved)
    # Digests only: tool arguments never go to the log at INFO (SPEC/STYLE).
    log.info(
        "request %s: an approver edited the arguments of %s (sha256 %s -> %s); running the "
        "tool with the approved arguments",
        state.id,
        tool,
        state.arguments_sha256,
        arguments_sha256(edited),
    )
    return edited, rebind(edited)


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
        edited: Callable[[dict[str, Any]], Callable[[], Awaitable[T]]] | None = None,
    ) -> T:
        """``approve`` then ``run``. ``edited`` makes the call for arguments an approver
        edited (see ``adopt``); without it an edited approval raises ``GrantRefused``."""
        state = await self.approve(
            tool,
            json_arguments(arguments),
            justification=justification,
            context=context,
            idempotency_key=idempotency_key,
        )
        arguments, runner = adopt(state, tool, arguments, edited)
        return await self.run(state, tool, arguments, runner or call, detail=detail)

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
        edited: Callable[[dict[str, Any]], Callable[[], T]] | None = None,
    ) -> T:
        state = self.approve(
            tool,
            json_arguments(arguments),
            justification=justification,
            context=context,
            idempotency_key=idempotency_key,
        )
        arguments, runner = adopt(state, tool, arguments, edited)
        return self.run(state, tool, arguments, runner or call, detail=detail)

    def _report(self, state: RequestState, outcome: str, detail: Mapping[str, Any]) -> None:
        try:
            self.client.report(state.id, _grant(state, state.tool), outcome, detail)
        except (ApiError, Unavailable, GrantRefused) as exc:
            log.warning("could not report %s for request %s: %s", outcome, state.id, exc)


def rebound(
    signature: inspect.Signature, approved: Mapping[str, Any], tool: str
) -> inspect.BoundArguments:
    """The function's arguments rebuilt from an approver's edit. Raises ``GrantRefused``
    when the edit names parameters the function does not have (nothing runs)."""
    params = signature.parameters
    unknown = [k for k in approved if k not in params]
    if unknown:
        raise GrantRefused(tool, f"the edited arguments name unknown parameters {unknown}")
    values: dict[str, Any] = {}
    for key, value in approved.items():
        kind = params[key].kind
        values[key] = tuple(value) if kind is inspect.Parameter.VAR_POSITIONAL else value
    try:
        bound = inspect.BoundArguments(signature, values)
        # Every required parameter must be present, as for a normal call.
        signature.bind(*bound.args, **bound.kwargs)
    except TypeError as exc:
        raise GrantRefused(tool, f"the edited arguments do not fit the function: {exc}") from None
    return bound


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

                def edited(approved: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
                    again = rebound(signature, approved, name)

                    async def invoke_edited() -> Any:
                        return await cast(Callable[..., Awaitable[Any]], func)(
                            *again.args, **again.kwargs
                        )

                    return invoke_edited

                return await approvals_a.call(
                    name,
                    bound.arguments,
                    invoke,
                    justification=why,
                    context=ctx,
                    detail=detail,
                    edited=edited,
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

            def edited(approved: dict[str, Any]) -> Callable[[], Any]:
                again = rebound(signature, approved, name)
                return lambda: func(*again.args, **again.kwargs)

            return approvals_s.call(
                name,
                bound.arguments,
                lambda: func(*bound.args, **bound.kwargs),
                justification=why,
                context=ctx,
                detail=detail,
                edited=edited,
            )

        return cast(Callable[P, T], run_sync)

    return decorate


__all__ = [
    "Approvals",
    "AsyncApprovals",
    "adopt",
    "bound_arguments",
    "json_arguments",
    "require_approval",
]
