"""OpenAI Agents SDK: ``needs_approval`` tools whose interruptions signoff resolves.

``SignoffTools(approvals).tool(func)`` builds a ``FunctionTool`` whose ``needs_approval``
asks signoff (``Idempotency-Key`` ``openai-agents:<call_id>``):

- ``auto``/``notify`` (approved at once) and final refusals need no interruption: the tool
  runs, or answers the model with the refusal text;
- ``confirm`` interrupts the run. Serialise ``result.to_state()`` (``RunState.to_string``)
  across the wait; later, in any process, ``await tools.resolve(state)`` waits for signoff
  and calls ``state.approve(item)`` or ``state.reject(item, rejection_message=reason)``,
  then ``Runner.run(agent, state)`` continues.

Whenever the tool is invoked, it finds its request again in signoff by that idempotency key
(``GET /v1/requests?idempotency_key=K``, so a restarted process picks it up; a request found
for other arguments is refused) and runs only through
``AsyncApprovals.run``: offline grant check against the arguments it is invoked with,
``started``, the function, then the outcome: a function that raises is reported
``failed`` (the model still gets the SDK's error answer, or the tool's own
``failure_error_function``'s). A call an approver edited (rule option ``editable``) runs with
the approved arguments the grant binds, and its output starts with a note saying so.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any

from agents import FunctionTool, RunState, function_tool
from agents.run_context import RunContextWrapper
from agents.tool import default_tool_error_function
from agents.tool_context import ToolContext

from adapters.agent.approval import AsyncApprovals, adopt, edited_answer, json_arguments
from adapters.agent.errors import AgentError, Pending
from adapters.agent.lookup import find_or_submit
from adapters.agent.state import RequestState


def idempotency_key(call_id: str) -> str:
    return f"openai-agents:{call_id}"


class SignoffTools:
    """Builds signoff-gated function tools and resolves their interruptions."""

    def __init__(
        self,
        approvals: AsyncApprovals,
        *,
        justification: str | Callable[[Mapping[str, Any]], str] = "",
    ) -> None:
        self.approvals = approvals
        self.justification = justification
        self._names: dict[str, str] = {}

    async def lookup(self, tool: str, arguments: Mapping[str, Any], call_id: str) -> RequestState:
        """Submit (or find again, by idempotency key) the request for one tool call.
        Raises ``GrantRefused`` when the call id was already used with other arguments."""
        why = self.justification(arguments) if callable(self.justification) else self.justification
        return await find_or_submit(
            self.approvals.client,
            tool,
            json_arguments(arguments),
            idempotency_key=idempotency_key(call_id),
            justification=why,
            context={"via": "openai-agents", "call_id": call_id},
        )

    def tool(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        signoff_name: str | None = None,
        **options: Any,
    ) -> FunctionTool:
        """``function_tool(func)`` gated by signoff (``options`` go to ``function_tool``).
        ``signoff_name`` is the tool name signoff's policy sees (default: the tool's name)."""
        agent_name = name or func.__name__
        tool_name = signoff_name or agent_name
        self._names[agent_name] = tool_name

        async def needs_approval(
            ctx: RunContextWrapper[Any], params: dict[str, Any], call_id: str
        ) -> bool:
            try:
                state = await self.lookup(tool_name, params, call_id)
            except AgentError:
                return False  # the invocation answers the model with the refusal
            return not state.final

        # The SDK turns the function's exceptions into an answer for the model inside the
        # tool, where signoff would see a success: the tool is built to raise, and the
        # answer is made below, after the failure has been reported.
        answer_failure = options.pop("failure_error_function", default_tool_error_function)
        built = function_tool(
            func,
            name_override=agent_name,
            needs_approval=needs_approval,
            failure_error_function=None,
            **options,
        )
        inner = built.on_invoke_tool

        async def invoke(ctx: ToolContext[Any], input_json: str) -> Any:
            try:
                arguments = json.loads(input_json or "{}")
                state = await self.lookup(tool_name, arguments, ctx.tool_call_id)
                if not state.final:
                    raise Pending(tool_name, state.id, 0)
                state.raise_for_refusal()
                # An approver's edit (rule option editable) is what the grant binds: run that.
                arguments, approved = adopt(state, tool_name, arguments, json_arguments)
                sent = input_json if approved is None else json.dumps(approved)
                result = await self.approvals.run(
                    state, tool_name, arguments, lambda: inner(ctx, sent)
                )
                return result if approved is None else edited_answer(approved, str(result))
            except AgentError as exc:
                return str(exc)
            except Exception as exc:  # the function failed; signoff recorded it as failed
                if answer_failure is None:
                    raise
                answer = answer_failure(ctx, exc)
                return await answer if inspect.isawaitable(answer) else answer

        built.on_invoke_tool = invoke
        return built

    async def resolve(
        self,
        state: RunState[Any, Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 -- a wait budget; Pending when spent
    ) -> int:
        """Approve or reject every interruption of ``state`` from signoff's decisions;
        returns how many were resolved. Raises ``Pending`` when one is still undecided."""
        wait = timeout if timeout is not None else self.approvals.timeout
        resolved = 0
        for item in state.get_interruptions():
            raw = item.raw_item
            call_id = raw.get("call_id") if isinstance(raw, dict) else getattr(raw, "call_id", "")
            arguments = (
                raw.get("arguments") if isinstance(raw, dict) else getattr(raw, "arguments", "{}")
            )
            tool = self._names.get(item.tool_name or "", item.tool_name or "")
            try:
                request = await self.lookup(tool, json.loads(arguments or "{}"), str(call_id))
                if not request.final:
                    request = await self.approvals.client.wait(request.id, timeout=wait)
                if not request.final:
                    raise Pending(tool, request.id, wait)
                request.raise_for_refusal()
            except Pending:
                raise
            except AgentError as exc:
                state.reject(item, rejection_message=str(exc))
            else:
                state.approve(item)
            resolved += 1
        return resolved


__all__ = ["SignoffTools", "idempotency_key"]
