"""Pydantic AI with signoff-gated tools, driven by a ``FunctionModel`` that emits tool calls,
against a real signoff server. The message history is serialised across the wait."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.tools import DeferredToolRequests, ToolApproved

from adapters.agent import AsyncApprovals, AsyncSignoff
from adapters.agent.integrations.pydantic_ai import resolve, signoff_tool
from bot.domain import Outcome
from tests.integration.agent_server import LiveServer, live_server


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(tmp_path)


@pytest_asyncio.fixture
async def approvals(live: LiveServer) -> AsyncIterator[AsyncApprovals]:
    async with AsyncSignoff(live.url, live.register()) as client:
        yield AsyncApprovals(client, timeout=10)


def scripted(tool: str, args: dict[str, Any]) -> FunctionModel:
    """Calls ``tool`` once, then answers with what the tool returned."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last = messages[-1]
        if isinstance(last, ModelRequest):
            for part in last.parts:
                if isinstance(part, ToolReturnPart):
                    return ModelResponse(
                        parts=[TextPart(f"tool said: {part.model_response_str()}")]
                    )
        return ModelResponse(parts=[ToolCallPart(tool, args, tool_call_id="call-1")])

    return FunctionModel(respond)


def make_agent(approvals: AsyncApprovals, model: FunctionModel, ran: list[Any]) -> Agent[Any, Any]:
    agent: Agent[Any, Any] = Agent(model, output_type=[str, DeferredToolRequests])

    @agent.tool
    @signoff_tool(approvals)
    async def transfer_money(ctx: RunContext[Any], amount: int, to: str) -> str:
        """Send money."""
        ran.append({"amount": amount, "to": to})
        return f"sent {amount} to {to}"

    @agent.tool
    @signoff_tool(approvals)
    async def delete_repo(ctx: RunContext[Any], name: str) -> str:
        """Delete a repository."""
        ran.append(name)
        return "deleted"

    return agent


async def test_auto_call_runs_in_one_run(approvals: AsyncApprovals) -> None:
    ran: list[Any] = []
    agent = make_agent(approvals, scripted("transfer_money", {"amount": 10, "to": "a"}), ran)
    result = await agent.run("pay a")
    assert result.output == "tool said: sent 10 to a"
    assert ran == [{"amount": 10, "to": "a"}]


async def test_confirm_defers_then_runs_once_after_approval(
    approvals: AsyncApprovals, live: LiveServer
) -> None:
    ran: list[Any] = []
    model = scripted("transfer_money", {"amount": 5000, "to": "acct-1"})
    first = await make_agent(approvals, model, ran).run("pay acct-1")
    assert isinstance(first.output, DeferredToolRequests) and ran == []
    saved = ModelMessagesTypeAdapter.dump_json(first.all_messages())

    [request] = live.pending()
    live.approve(request.id)
    results = await resolve(approvals, first.output)

    history = ModelMessagesTypeAdapter.validate_json(saved)  # e.g. in another process
    second = await make_agent(approvals, model, ran).run(
        message_history=history, deferred_tool_results=results
    )
    assert second.output == "tool said: sent 5000 to acct-1"
    assert ran == [{"amount": 5000, "to": "acct-1"}]
    assert live.outcome(request.id).outcome is Outcome.SUCCEEDED


async def test_an_edited_approval_runs_the_edited_arguments_and_tells_the_model(
    approvals: AsyncApprovals, live: LiveServer
) -> None:
    ran: list[Any] = []
    model = scripted("transfer_money", {"amount": 5000, "to": "acct-1"})
    agent = make_agent(approvals, model, ran)
    first = await agent.run("pay acct-1")
    [request] = live.pending()
    live.approve_edited(request.id, {"amount": 1500, "to": "acct-1"})
    results = await resolve(approvals, first.output)
    second = await agent.run(message_history=first.all_messages(), deferred_tool_results=results)
    assert second.output == "tool said: sent 1500 to acct-1"
    assert ran == [{"amount": 1500, "to": "acct-1"}]  # the approver's version, once
    told = [
        part.content
        for message in second.new_messages()
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, UserPromptPart)
    ]
    assert any("A human approver edited the arguments" in str(text) for text in told), told
    assert any('{"amount": 1500, "to": "acct-1"}' in str(text) for text in told)
    assert live.outcome(request.id).outcome is Outcome.SUCCEEDED


async def test_denial_and_block_reach_the_model_with_the_reason(
    approvals: AsyncApprovals, live: LiveServer
) -> None:
    ran: list[Any] = []
    model = scripted("transfer_money", {"amount": 9000, "to": "x"})
    agent = make_agent(approvals, model, ran)
    first = await agent.run("pay x")
    [request] = live.pending()
    live.deny(request.id, "x is not a vendor")
    second = await agent.run(
        message_history=first.all_messages(),
        deferred_tool_results=await resolve(approvals, first.output),
    )
    assert "denied by a human approver: x is not a vendor" in second.output

    blocked = await make_agent(approvals, scripted("delete_repo", {"name": "core"}), ran).run("rm")
    assert "blocked by policy: repositories are never deleted by agents" in blocked.output
    assert ran == []


@pytest.mark.parametrize("edited", [False, True], ids=["approved", "approved-with-an-edit"])
async def test_override_args_after_approval_are_refused(
    approvals: AsyncApprovals, live: LiveServer, edited: bool
) -> None:
    ran: list[Any] = []
    model = scripted("transfer_money", {"amount": 5000, "to": "acct-1"})
    agent = make_agent(approvals, model, ran)
    first = await agent.run("pay")
    [request] = live.pending()
    if edited:  # an edit is for this call only: never run for another call's arguments
        live.approve_edited(request.id, {"amount": 1500, "to": "acct-1"})
    else:
        live.approve(request.id)
    results = await resolve(approvals, first.output)
    results.approvals["call-1"] = ToolApproved(override_args={"amount": 5000, "to": "attacker"})
    second = await agent.run(message_history=first.all_messages(), deferred_tool_results=results)
    assert "not run because its approval does not cover it" in second.output
    assert ran == []
    assert live.outcome(request.id).grant_used_at is None
