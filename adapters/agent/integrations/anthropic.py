"""Anthropic SDK: the tool-execution step of a Messages API tool-use loop, gated by signoff.

In the usual loop (``messages.create`` → run each ``tool_use`` block → send the
``tool_result`` blocks back) replace the middle step with ``run_tool_uses`` (or
``arun_tool_uses`` with an ``AsyncApprovals``)::

    results = run_tool_uses(approvals, response, {"transfer_money": transfer_money})
    messages += [{"role": "assistant", "content": response.content},
                 {"role": "user", "content": results}]

Each ``tool_use`` block becomes a signoff request (``Idempotency-Key``
``anthropic:<tool_use id>``, so re-running the step after a crash finds the same request
and never runs a call twice); the call waits for the decision, the grant is verified
offline against the block's input at the moment of the call, and outcomes are reported.
Refusals come back as ``tool_result`` blocks with ``is_error: true`` and the reason. When an
approver edited the arguments (rule option ``editable``), the tool runs with the approved
arguments the grant binds, and its ``tool_result`` starts with a note saying so.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from adapters.agent.approval import Approvals, AsyncApprovals, edited_answer
from adapters.agent.errors import AgentError
from adapters.agent.steps import Steps, awaiting, blocking, invoke


def tool_uses(message: Any) -> list[Any]:
    """The ``tool_use`` blocks of a ``Message`` (or of its ``content`` list)."""
    content = getattr(message, "content", message)
    return [b for b in content if getattr(b, "type", None) == "tool_use"]


def _result(block: Any, content: str, error: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": block.id, "content": content}
    if error:
        result["is_error"] = True
    return result


def _invoke(fn: Callable[..., Any], block: Any) -> Any:
    # Reads the block's input at call time: exactly what the grant was just checked against.
    return fn(**block.input)


def _edited(
    fn: Callable[..., Any], edits: list[dict[str, Any]], approved: dict[str, Any]
) -> Callable[[], Any]:
    # An approver's edit (rule option editable) is what the grant binds: run that, and
    # remember it so the tool_result tells the model.
    edits.append(approved)
    return functools.partial(fn, **approved)


def _unknown(block: Any) -> dict[str, Any]:
    return _result(block, f"Unknown tool {block.name}.", error=True)


def tool_results(
    approvals: Approvals | AsyncApprovals,
    message: Any,
    tools: Mapping[str, Callable[..., Any]],
    *,
    justification: str = "",
    names: Mapping[str, str] | None = None,
) -> Steps[list[dict[str, Any]]]:
    """Run the message's tool calls through signoff; returns the ``tool_result`` blocks.
    ``names`` maps a tool's API name to its signoff name (e.g. ``payments.transfer``)."""
    results = []
    for block in tool_uses(message):
        fn = tools.get(block.name)
        if fn is None:
            results.append(_unknown(block))
            continue
        edits: list[dict[str, Any]] = []
        try:
            output = yield invoke(
                approvals.call,
                (names or {}).get(block.name, block.name),
                block.input,
                functools.partial(_invoke, fn, block),
                justification=justification,
                context={"via": "anthropic", "tool_use_id": block.id},
                idempotency_key=f"anthropic:{block.id}",
                edited=functools.partial(_edited, fn, edits),
            )
        except AgentError as exc:
            results.append(_result(block, str(exc), error=True))
        else:
            approved = edits[0] if edits else None
            results.append(_result(block, edited_answer(approved, str(output))))
    return results


#: with an ``Approvals`` and plain tool functions
run_tool_uses = blocking(tool_results, "run_tool_uses")
#: with an ``AsyncApprovals`` (``AsyncAnthropic`` loops) and ``async def`` tools
arun_tool_uses = awaiting(tool_results, "arun_tool_uses")


__all__ = ["arun_tool_uses", "run_tool_uses", "tool_results", "tool_uses"]
