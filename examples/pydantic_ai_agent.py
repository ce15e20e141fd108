"""Pydantic AI: an approval-required tool deferred until signoff decides.

    .venv/bin/python examples/pydantic_ai_agent.py

A FunctionModel stands in for the LLM (use e.g. ``"anthropic:claude-..."`` instead).
"""

from __future__ import annotations

import asyncio
from typing import Any

from demo_home import token, url
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.tools import DeferredToolRequests

from adapters.agent import AsyncApprovals, AsyncSignoff
from adapters.agent.integrations.pydantic_ai import resolve, signoff_tool


def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    last = messages[-1]
    if isinstance(last, ModelRequest):
        for part in last.parts:
            if isinstance(part, ToolReturnPart):
                return ModelResponse(parts=[TextPart(f"Result: {part.model_response_str()}")])
    args = {"amount": 25000, "currency": "USD", "to": "acct-123"}
    return ModelResponse(parts=[ToolCallPart("transfer_money", args)])


async def main() -> None:
    async with AsyncSignoff(url(), token()) as client:
        approvals = AsyncApprovals(client)
        agent: Agent[Any, Any] = Agent(
            FunctionModel(script), output_type=[str, DeferredToolRequests]
        )

        @agent.tool
        @signoff_tool(approvals, tool="payments.transfer")
        async def transfer_money(ctx: RunContext[Any], amount: int, currency: str, to: str) -> str:
            """Send money to an account."""
            return f"transferred {amount} {currency} to {to}"

        result = await agent.run("Refund order 8812")
        if isinstance(result.output, DeferredToolRequests):
            saved = ModelMessagesTypeAdapter.dump_json(result.all_messages())  # store anywhere
            print("waiting for a signoff decision (console: alice) ...")
            decisions = await resolve(approvals, result.output)
            result = await agent.run(
                message_history=ModelMessagesTypeAdapter.validate_json(saved),
                deferred_tool_results=decisions,
            )
        print(result.output)


if __name__ == "__main__":
    asyncio.run(main())
