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
cannot run other arguments (no ``edited`` hook) gets ``GrantRefused``. The framework
integrations run the edit too and tell the model so (``edit_note``).

The function is never called without a valid, unused grant.

Each part is written once, as an operation (``approve``, ``run``, ``call``: steps in the
sense of ``adapters.agent.steps``); ``Approvals`` runs them synchronously and
``AsyncApprovals`` on an event loop, and ``require_approval`` picks by the function's kind.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar, cast

from adapters.agent.arguments import bound_arguments, json_arguments, rebound
from adapters.agent.client import AsyncSignoff, Signoff
from adapters.agent.errors import ApiError, GrantRefused, Unavailable
from adapters.agent.grants import AsyncGrantVerifier, GrantVerifier
from adapters.agent.protocol import ClientCore
from adapters.agent.state import RequestState
from adapters.agent.steps import Awaiting, Blocking, Operation, Steps, adrive, drive, invoke
from bot.errors import RequestError
from bot.evidence.canonical import arguments_sha256

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
Detail = Callable[[Any], Mapping[str, Any]]
Text = str | Callable[[Mapping[str, Any]], str]
C = TypeVar("C")

DEFAULT_TIMEOUT = 600.0


def adopt(
    state: RequestState,
    tool: str,
    arguments: Mapping[str, Any],
    rebind: Callable[[dict[str, Any]], C] | None,
) -> tuple[Mapping[str, Any], C | None]:
    """The arguments to run and the call to make: the approver's edit when there is one
    (logged with both digests), else ``arguments`` unchanged (``rebind`` unused). Raises
    ``GrantRefused`` for an edit when ``arguments`` are not the request's own or ``rebind``
    is None (the caller cannot run it)."""
    approved = state.approved_arguments
    if approved is None:
        return arguments, None
    try:
        # The edit replaces the arguments of this request only: a call with other arguments
        # (changed after the request, or another call) is not the one the approver edited.
        same = arguments_sha256(json_arguments(arguments)) == state.arguments_sha256
    except (TypeError, RequestError):
        same = False
    if not same:
        raise GrantRefused(tool, "the arguments changed after the request", request_id=state.id)
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


def edit_note(approved: Mapping[str, Any]) -> str:
    """What the framework integrations tell the model when an approver edited the
    arguments: the call ran with ``approved`` (the arguments the grant binds), not with the
    ones the model proposed, so it must not report or retry its own version."""
    shown = json.dumps(dict(approved), sort_keys=True, ensure_ascii=False)
    return (
        "A human approver edited the arguments before approving: the call ran with "
        f"{shown} instead of the arguments you proposed."
    )


def edited_answer(approved: Mapping[str, Any] | None, answer: str) -> str:
    """``answer`` (a tool's result as the model reads it), preceded by ``edit_note`` when
    ``approved`` (the edited arguments) is not None."""
    return answer if approved is None else f"{edit_note(approved)}\n{answer}"


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


Client = TypeVar("Client", AsyncSignoff, Signoff)
Verifier = TypeVar("Verifier", AsyncGrantVerifier, GrantVerifier)


def approve(
    approvals: Core,
    tool: str,
    arguments: Mapping[str, Any],
    *,
    justification: str = "",
    context: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Steps[RequestState]:
    """Submit and wait for approval; returns the approved state or raises the refusal."""
    state = yield invoke(
        approvals.client.request,
        tool,
        arguments,
        justification=justification,
        context=context,
        timeout=approvals.timeout,
        idempotency_key=idempotency_key,
    )
    return cast(RequestState, state)


def run(
    approvals: Core,
    state: RequestState,
    tool: str,
    arguments: Mapping[str, Any],
    call: Callable[[], Any],
    *,
    detail: Detail | None = None,
) -> Steps[Any]:
    """Verify ``state``'s grant for ``tool(arguments)``, consume it, run ``call`` and
    report the outcome. Raises ``GrantRefused`` (nothing ran) or what ``call`` raises."""
    snapshot = json_arguments(arguments)
    yield invoke(approvals.verifier.verify, state, tool, snapshot)
    try:
        # The server checks the grant against these arguments too before consuming it.
        yield invoke(
            approvals.client.report, state.id, _grant(state, tool), "started", arguments=snapshot
        )
    except ApiError as exc:
        raise _started_refusal(exc, tool, state.id) from exc
    try:
        result = yield invoke(call)
    except Exception as exc:
        yield from _report(approvals, state, "failed", _error_detail(exc))
        raise
    yield from _report(approvals, state, "succeeded", dict(detail(result)) if detail else {})
    return result


def call(
    approvals: Core,
    tool: str,
    arguments: Mapping[str, Any],
    call: Callable[[], Any],
    *,
    justification: str = "",
    context: Mapping[str, Any] | None = None,
    detail: Detail | None = None,
    idempotency_key: str | None = None,
    edited: Callable[[dict[str, Any]], Callable[[], Any]] | None = None,
) -> Steps[Any]:
    """``approve`` then ``run``. ``edited`` makes the call for arguments an approver
    edited (see ``adopt``); without it an edited approval raises ``GrantRefused``."""
    state = yield from approve(
        approvals,
        tool,
        json_arguments(arguments),
        justification=justification,
        context=context,
        idempotency_key=idempotency_key,
    )
    arguments, runner = adopt(state, tool, arguments, edited)
    return (yield from run(approvals, state, tool, arguments, runner or call, detail=detail))


def _report(
    approvals: Core,
    state: RequestState,
    outcome: str,
    detail: Mapping[str, Any],
) -> Steps[None]:
    try:
        yield invoke(approvals.client.report, state.id, _grant(state, state.tool), outcome, detail)
    except (ApiError, Unavailable, GrantRefused) as exc:
        # The function already ran; losing the outcome record must not hide its result.
        log.warning("could not report %s for request %s: %s", outcome, state.id, exc)


class _ApprovalsCore(Generic[Client, Verifier]):
    """What both shells share: the client, the offline grant verifier, the wait budget."""

    def __init__(
        self, client: Client, *, verifier: Verifier | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.client: Client = client
        self.verifier: Verifier = verifier or self._verifier(client)
        self.timeout = timeout

    def _verifier(self, client: Client) -> Verifier:
        raise NotImplementedError

    approve = Operation(approve)
    run = Operation(run)
    call = Operation(call)


Core = _ApprovalsCore[Any, Any]


class AsyncApprovals(Awaiting, _ApprovalsCore[AsyncSignoff, AsyncGrantVerifier]):
    """Approve-then-run with an ``AsyncSignoff`` client and an offline grant verifier;
    ``call`` and ``run`` take functions returning awaitables."""

    def _verifier(self, client: AsyncSignoff) -> AsyncGrantVerifier:
        return AsyncGrantVerifier(client.jwks)


class Approvals(Blocking, _ApprovalsCore[Signoff, GrantVerifier]):
    """Synchronous twin of ``AsyncApprovals`` over a ``Signoff`` client."""

    def _verifier(self, client: Signoff) -> GrantVerifier:
        return GrantVerifier(client.jwks)


def _text(value: Text, arguments: Mapping[str, Any]) -> str:
    return value(arguments) if callable(value) else value


def _approvals_for(
    client: AsyncSignoff | Signoff | AsyncApprovals | Approvals, is_async: bool, timeout: float
) -> Core:
    shell: type[Core] = AsyncApprovals if is_async else Approvals
    plain: type[ClientCore] = AsyncSignoff if is_async else Signoff
    if isinstance(client, shell):
        return client
    if isinstance(client, plain):
        return shell(client, timeout=timeout)
    raise TypeError(
        "an async tool needs an AsyncSignoff client"
        if is_async
        else "a synchronous tool needs a Signoff client"
    )


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
        is_async = inspect.iscoroutinefunction(func)
        approvals = _approvals_for(client, is_async, timeout)

        def steps(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Steps[Any]:
            reason = kwargs.pop("signoff_justification", None)
            extra = kwargs.pop("signoff_context", None) or {}
            bound = bound_arguments(signature, args, kwargs)
            why = reason if isinstance(reason, str) else _text(justification, bound.arguments)

            def edited(approved: dict[str, Any]) -> Callable[[], Any]:
                again = rebound(signature, approved, name)
                return lambda: func(*again.args, **again.kwargs)

            return call(
                approvals,
                name,
                bound.arguments,
                lambda: func(*bound.args, **bound.kwargs),
                justification=why,
                context={**(context or {}), **extra},
                detail=detail,
                edited=edited,
            )

        # One operation; only the wait differs (an async function's calls are awaited).
        @functools.wraps(func)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            return await adrive(steps(args, kwargs))

        @functools.wraps(func)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            return drive(steps(args, kwargs))

        return cast(Callable[P, T], run_async if is_async else run_sync)

    return decorate


__all__ = [
    "Approvals",
    "AsyncApprovals",
    "adopt",
    "bound_arguments",
    "edit_note",
    "edited_answer",
    "json_arguments",
    "rebound",
    "require_approval",
]
