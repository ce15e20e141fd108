"""LangGraph: a tools node that asks signoff first and pauses the graph with ``interrupt()``.

``signoff_tools_node(approvals, tools)`` replaces LangGraph's prebuilt ``ToolNode``. For the
tool calls of the last AI message it:

1. finds or submits every call in signoff under an ``Idempotency-Key`` of
   ``langgraph:<thread_id>:<tool_call_id>``, so re-running the node after a resume (in this
   or another process) finds the same requests instead of creating new ones;
2. if any is pending, calls ``interrupt({"signoff": [request ids]})`` *before running any
   tool*: the graph's checkpointer saves the run and the caller gets the interrupt;
3. once resumed (``Command(resume=...)``, see ``resume_when_decided``), re-reads each
   request from signoff -- the resume value is never trusted as a decision -- and runs the
   approved calls through ``Approvals.run`` (offline grant check against the arguments in
   the graph state, ``started``, tool, outcome). Refusals become ``ToolMessage``s with
   ``status="error"`` and the reason, which the model sees. A call an approver edited
   (rule option ``editable``) runs with the approved arguments the grant binds, and its
   ``ToolMessage`` starts with a note saying so.

Each call is found again by its key (``GET /v1/requests?idempotency_key=K``) before it is
submitted. Arguments changed in the saved state after approval no longer match the request
found under the key and are refused (``GrantRefused``); the grant check would refuse them too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.types import Command, interrupt

from adapters.agent.approval import Approvals, adopt, edited_answer, json_arguments
from adapters.agent.client import Signoff
from adapters.agent.errors import AgentError, Pending
from adapters.agent.lookup import find_or_submit_sync
from adapters.agent.state import RequestState

log = logging.getLogger(__name__)

INTERRUPT_KEY = "signoff"


def idempotency_key(config: RunnableConfig, tool_call_id: str) -> str:
    thread = (config.get("configurable") or {}).get("thread_id", "")
    return f"langgraph:{thread}:{tool_call_id}"


def _submit(
    approvals: Approvals,
    config: RunnableConfig,
    call: Mapping[str, Any],
    justification: str,
    tool: str,
) -> RequestState:
    return find_or_submit_sync(
        approvals.client,
        tool,
        json_arguments(call["args"]),
        idempotency_key=idempotency_key(config, call["id"]),
        justification=justification,
        context={"via": "langgraph", "tool_call_id": call["id"]},
    )


def signoff_tools_node(
    approvals: Approvals,
    tools: Sequence[BaseTool],
    *,
    justification: str | Callable[[Mapping[str, Any]], str] = "",
    messages_key: str = "messages",
    names: Mapping[str, str] | None = None,
) -> Callable[[dict[str, Any], RunnableConfig], dict[str, list[ToolMessage]]]:
    """A graph node running the last AI message's tool calls with signoff in front.
    ``names`` maps a LangChain tool name to the signoff tool name (e.g. ``payments.transfer``);
    unmapped tools keep their own name."""
    by_name = {tool.name: tool for tool in tools}
    renamed = dict(names or {})

    def node(state: dict[str, Any], config: RunnableConfig) -> dict[str, list[ToolMessage]]:
        message = state[messages_key][-1]
        calls = list(message.tool_calls) if isinstance(message, AIMessage) else []
        decided: dict[str | None, RequestState | AgentError] = {}
        for call in calls:
            why = justification(call["args"]) if callable(justification) else justification
            try:
                tool = renamed.get(call["name"], call["name"])
                decided[call["id"]] = _submit(approvals, config, call, why, tool)
            except AgentError as exc:
                decided[call["id"]] = exc
        pending = [s.id for s in decided.values() if isinstance(s, RequestState) and not s.final]
        if pending:
            interrupt({INTERRUPT_KEY: pending})
            # Resumed: the decision is whatever signoff says now, not the resume value.
            for call_id, item in list(decided.items()):
                if isinstance(item, RequestState) and not item.final:
                    decided[call_id] = approvals.client.get(item.id)
        out: list[ToolMessage] = []
        for call in calls:
            tool = renamed.get(call["name"], call["name"])
            out.append(_run(approvals, by_name, call, decided[call["id"]], tool))
        return {messages_key: out}

    return node


def _run(
    approvals: Approvals,
    by_name: Mapping[str, BaseTool],
    call: Mapping[str, Any],
    item: RequestState | AgentError,
    signoff_name: str,
) -> ToolMessage:
    name, call_id = call["name"], call["id"]
    try:
        if isinstance(item, AgentError):
            raise item
        if not item.final:
            raise Pending(name, item.id, 0)
        item.raise_for_refusal()
        tool = by_name.get(name)
        if tool is None:
            return ToolMessage(f"Unknown tool {name}.", tool_call_id=call_id, status="error")
        # An approver's edit (rule option editable) is what the grant binds: run that.
        arguments, approved = adopt(item, signoff_name, call["args"], json_arguments)
        result = approvals.run(item, signoff_name, arguments, lambda: tool.invoke(dict(arguments)))
        return ToolMessage(edited_answer(approved, str(result)), tool_call_id=call_id, name=name)
    except AgentError as exc:
        return ToolMessage(str(exc), tool_call_id=call_id, name=name, status="error")


def pending_requests(snapshot: Any) -> list[str]:
    """The signoff request ids a paused graph waits for (from ``graph.get_state(config)``)."""
    ids: list[str] = []
    for task in getattr(snapshot, "tasks", ()):
        for pause in getattr(task, "interrupts", ()):
            value = getattr(pause, "value", None)
            if isinstance(value, dict):
                ids.extend(str(i) for i in value.get(INTERRUPT_KEY, ()))
    return ids


def resume_when_decided(
    graph: Any, config: RunnableConfig, client: Signoff, *, timeout: float = 600.0
) -> Any:
    """Wait for every pending signoff request of the paused run, then resume it (in this
    process or any other with the same checkpointer). Raises ``Pending`` on time-out."""
    for request_id in pending_requests(graph.get_state(config)):
        state = client.wait(request_id, timeout=timeout)
        if not state.final:
            raise Pending(state.tool, state.id, timeout)
    return graph.invoke(Command(resume={INTERRUPT_KEY: "decided"}), config)


__all__ = ["pending_requests", "resume_when_decided", "signoff_tools_node"]
