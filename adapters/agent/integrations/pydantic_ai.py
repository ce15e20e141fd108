"""Pydantic AI: approval-required tools resolved from signoff decisions.

Decorate a tool (``async def f(ctx: RunContext, ...)``) with ``signoff_tool(approvals)``
under ``@agent.tool``, and give the agent ``output_type=[..., DeferredToolRequests]``:

- on the first call the tool submits itself to signoff (``Idempotency-Key`` from the run and
  tool call ids). ``auto``/``notify`` run at once; a refusal is a ``ModelRetry`` the model
  sees with the reason; ``confirm`` raises ``ApprovalRequired`` with the request id in the
  metadata, so the run ends with ``DeferredToolRequests`` (message history serialisable);
- ``resolve(approvals, requests)`` waits for signoff and builds the ``DeferredToolResults``:
  ``ToolApproved`` (with the request id as metadata) or ``ToolDenied`` with the reason;
- on the next run the approved tool re-reads its request from signoff, verifies the grant
  offline against the arguments it is actually called with (so ``override_args`` or edited
  history are refused), reports ``started``, runs, and reports the outcome. A call an
  approver edited (rule option ``editable``) runs with the approved arguments the grant
  binds; the tool's return value is kept and a note saying so goes to the model
  (``ToolReturn`` content).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast

from pydantic_ai import ApprovalRequired, ModelRetry, RunContext
from pydantic_ai.messages import ToolReturn
from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults, ToolApproved, ToolDenied

from adapters.agent.approval import (
    AsyncApprovals,
    adopt,
    bound_arguments,
    edit_note,
    json_arguments,
    rebound,
)
from adapters.agent.errors import AgentError, GrantRefused, Pending

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
META_KEY = "signoff_request_id"


def _rebound(
    signature: inspect.Signature, ctx: RunContext[Any], approved: dict[str, Any], tool: str
) -> inspect.BoundArguments:
    """The tool's call with an approver's edit (the run context stays the first argument)."""
    context = next(iter(signature.parameters))
    if context in approved:
        raise GrantRefused(tool, f"the edited arguments name the run context {context!r}")
    return rebound(signature, {context: ctx, **approved}, tool)


def signoff_tool(
    approvals: AsyncApprovals,
    *,
    tool: str | None = None,
    justification: str | Callable[[Mapping[str, Any]], str] = "",
) -> Callable[[F], F]:
    """Gate an async Pydantic AI tool (first parameter ``RunContext``) with signoff."""

    def decorate(func: F) -> F:
        name = tool or func.__name__
        signature = inspect.signature(func)

        @functools.wraps(func)
        async def wrapper(ctx: RunContext[Any], *args: Any, **kwargs: Any) -> Any:
            bound = bound_arguments(signature, (ctx, *args), kwargs)
            arguments = {k: v for k, v in bound.arguments.items() if v is not ctx}
            try:
                if ctx.tool_call_approved:
                    request_id = (ctx.tool_call_metadata or {}).get(META_KEY)
                    if not isinstance(request_id, str):
                        raise Pending(name, "unknown", 0)
                    state = await approvals.client.get(request_id)
                else:
                    why = justification(arguments) if callable(justification) else justification
                    state = await approvals.client.submit(
                        name,
                        json_arguments(arguments),
                        justification=why,
                        context={"via": "pydantic-ai", "tool_call_id": ctx.tool_call_id},
                        idempotency_key=f"pydantic-ai:{ctx.run_id}:{ctx.tool_call_id}",
                    )
                    if not state.final:
                        raise ApprovalRequired(metadata={META_KEY: state.id})
                state.raise_for_refusal()
                # An approver's edit (rule option editable) is what the grant binds: run that.
                run_with, approved = adopt(state, name, arguments, json_arguments)
                again = bound if approved is None else _rebound(signature, ctx, approved, name)
                result = await approvals.run(
                    state, name, run_with, lambda: func(*again.args, **again.kwargs)
                )
                if approved is None:
                    return result
                return ToolReturn(return_value=result, content=edit_note(approved))
            except AgentError as exc:
                raise ModelRetry(str(exc)) from exc

        return cast(F, wrapper)

    return decorate


async def resolve(
    approvals: AsyncApprovals,
    requests: DeferredToolRequests,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 -- a wait budget; Pending when spent
) -> DeferredToolResults:
    """Wait for signoff's decision on each deferred approval and turn it into results.
    Raises ``Pending`` when a request is still undecided after ``timeout`` seconds."""
    results = DeferredToolResults()
    for part in requests.approvals:
        request_id = (requests.metadata.get(part.tool_call_id) or {}).get(META_KEY)
        if not isinstance(request_id, str):
            results.approvals[part.tool_call_id] = ToolDenied("This call was not sent to signoff.")
            continue
        state = await approvals.client.wait(request_id, timeout=timeout or approvals.timeout)
        if not state.final:
            raise Pending(part.tool_name, request_id, timeout or approvals.timeout)
        refusal = state.refusal()
        if refusal is not None:
            results.approvals[part.tool_call_id] = ToolDenied(str(refusal))
        else:
            results.approvals[part.tool_call_id] = ToolApproved()
            results.metadata[part.tool_call_id] = {META_KEY: request_id}
    return results


__all__ = ["resolve", "signoff_tool"]
