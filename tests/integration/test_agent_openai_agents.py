"""OpenAI Agents SDK with signoff-gated ``needs_approval`` tools, driven by a scripted
``Model`` (no hosted model), against a real signoff server; ``RunState`` is serialised to a
string across the wait."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from agents import Agent, Model, ModelResponse, RunConfig, Runner, RunState, Usage
from agents.tool import FunctionTool, default_tool_error_function
from agents.tool_context import ToolContext
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from adapters.agent import AsyncApprovals, AsyncSignoff
from adapters.agent.integrations.openai_agents import SignoffTools
from bot.domain import Outcome
from tests.integration.agent_server import LiveServer, live_server

NO_TRACING = RunConfig(tracing_disabled=True)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(tmp_path)


@pytest_asyncio.fixture
async def tools(live: LiveServer) -> AsyncIterator[SignoffTools]:
    async with AsyncSignoff(live.url, live.register()) as client:
        yield SignoffTools(AsyncApprovals(client, timeout=10))


class ScriptedModel(Model):
    """Calls one tool, then answers with the tool's output."""

    def __init__(self, tool: str, args: dict[str, Any]) -> None:
        self.tool, self.args = tool, args
        self.call_id = f"call-{uuid.uuid4().hex[:12]}"  # call ids are unique per invocation

    async def get_response(
        self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any
    ) -> ModelResponse:
        outputs = [
            i for i in input if isinstance(i, dict) and i.get("type") == "function_call_output"
        ]
        if outputs:
            text = f"tool said: {outputs[-1]['output']}"
            message = ResponseOutputMessage(
                id="msg-1",
                type="message",
                role="assistant",
                status="completed",
                content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
            )
            return ModelResponse(output=[message], usage=Usage(), response_id=None)
        call = ResponseFunctionToolCall(
            type="function_call",
            name=self.tool,
            call_id=self.call_id,
            arguments=json.dumps(self.args),
            id="fc-1",
            status="completed",
        )
        return ModelResponse(output=[call], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


def make_agent(tools: SignoffTools, model: Model, ran: list[Any]) -> Agent[Any]:
    async def transfer_money(amount: int, to: str) -> str:
        """Send money."""
        ran.append({"amount": amount, "to": to})
        return f"sent {amount} to {to}"

    def delete_repo(name: str) -> str:
        """Delete a repository."""
        ran.append(name)
        return "deleted"

    return Agent(
        name="payer", model=model, tools=[tools.tool(transfer_money), tools.tool(delete_repo)]
    )


async def test_auto_call_runs_without_an_interruption(tools: SignoffTools) -> None:
    ran: list[Any] = []
    agent = make_agent(tools, ScriptedModel("transfer_money", {"amount": 10, "to": "a"}), ran)
    result = await Runner.run(agent, "pay a", run_config=NO_TRACING)
    assert not result.interruptions
    assert result.final_output == "tool said: sent 10 to a"
    assert ran == [{"amount": 10, "to": "a"}]


async def test_confirm_interrupts_and_resumes_from_a_serialised_state(
    tools: SignoffTools, live: LiveServer
) -> None:
    ran: list[Any] = []
    model = ScriptedModel("transfer_money", {"amount": 5000, "to": "acct-1"})
    first = await Runner.run(make_agent(tools, model, ran), "pay", run_config=NO_TRACING)
    assert len(first.interruptions) == 1 and ran == []
    saved = first.to_state().to_string()

    [request] = live.pending()
    live.approve(request.id)
    agent = make_agent(tools, model, ran)  # e.g. in another process
    state = await RunState.from_string(agent, saved)
    assert await tools.resolve(state) == 1
    second = await Runner.run(agent, state, run_config=NO_TRACING)
    assert second.final_output == "tool said: sent 5000 to acct-1"
    assert ran == [{"amount": 5000, "to": "acct-1"}]
    assert live.outcome(request.id).outcome is Outcome.SUCCEEDED


async def test_an_edited_approval_runs_the_edited_arguments_and_tells_the_model(
    tools: SignoffTools, live: LiveServer
) -> None:
    ran: list[Any] = []
    model = ScriptedModel("transfer_money", {"amount": 5000, "to": "acct-1"})
    agent = make_agent(tools, model, ran)
    first = await Runner.run(agent, "pay", run_config=NO_TRACING)
    [request] = live.pending()
    live.approve_edited(request.id, {"amount": 1500, "to": "acct-1"})
    state = await RunState.from_string(agent, first.to_state().to_string())
    assert await tools.resolve(state) == 1
    second = await Runner.run(agent, state, run_config=NO_TRACING)
    said = str(second.final_output)
    assert said.startswith("tool said: A human approver edited the arguments")
    assert '{"amount": 1500, "to": "acct-1"}' in said and said.endswith("sent 1500 to acct-1")
    assert ran == [{"amount": 1500, "to": "acct-1"}]  # the approver's version, once
    assert live.outcome(request.id).outcome is Outcome.SUCCEEDED


async def test_denial_and_block_reach_the_model_with_the_reason(
    tools: SignoffTools, live: LiveServer
) -> None:
    ran: list[Any] = []
    agent = make_agent(tools, ScriptedModel("transfer_money", {"amount": 9000, "to": "x"}), ran)
    first = await Runner.run(agent, "pay", run_config=NO_TRACING)
    [request] = live.pending()
    live.deny(request.id, "x is not a vendor")
    state = first.to_state()
    await tools.resolve(state)
    second = await Runner.run(agent, state, run_config=NO_TRACING)
    assert "denied by a human approver: x is not a vendor" in second.final_output

    blocked_agent = make_agent(tools, ScriptedModel("delete_repo", {"name": "core"}), ran)
    blocked = await Runner.run(blocked_agent, "rm", run_config=NO_TRACING)
    assert "blocked by policy: repositories are never deleted by agents" in blocked.final_output
    assert ran == []


async def test_arguments_changed_after_approval_are_refused_at_the_tool(
    tools: SignoffTools, live: LiveServer
) -> None:
    """The SDK itself refuses a RunState whose saved call was edited (its call-id check);
    signoff's check sits at the tool: an invocation with other arguments than approved is
    refused even when the run state says "approved"."""
    ran: list[Any] = []
    model = ScriptedModel("transfer_money", {"amount": 5000, "to": "acct-1"})
    agent = make_agent(tools, model, ran)
    first = await Runner.run(agent, "pay", run_config=NO_TRACING)
    [request] = live.pending()
    live.approve(request.id)
    state = first.to_state()
    assert await tools.resolve(state) == 1

    tool = next(t for t in agent.tools if getattr(t, "name", "") == "transfer_money")
    assert isinstance(tool, FunctionTool)
    tampered = json.dumps({"amount": 5000, "to": "attacker"})
    ctx = ToolContext(
        context=None,
        tool_name="transfer_money",
        tool_call_id=model.call_id,
        tool_arguments=tampered,
    )
    answer = await tool.on_invoke_tool(ctx, tampered)
    assert "not run because its approval does not cover it" in answer
    assert ran == []
    assert live.outcome(request.id).grant_used_at is None

    # the approved call itself still runs, exactly once
    second = await Runner.run(agent, state, run_config=NO_TRACING)
    assert second.final_output == "tool said: sent 5000 to acct-1"
    assert ran == [{"amount": 5000, "to": "acct-1"}]


async def test_a_failing_tool_is_reported_failed_and_the_model_hears_the_error(
    tools: SignoffTools, live: LiveServer
) -> None:
    async def transfer_money(amount: int, to: str) -> str:
        """Send money."""
        raise RuntimeError("bank is closed")

    model = ScriptedModel("transfer_money", {"amount": 5000, "to": "acct-1"})
    agent = Agent(name="payer", model=model, tools=[tools.tool(transfer_money)])
    first = await Runner.run(agent, "pay", run_config=NO_TRACING)
    [request] = live.pending()
    live.approve(request.id)
    state = first.to_state()
    assert await tools.resolve(state) == 1
    second = await Runner.run(agent, state, run_config=NO_TRACING)
    # the model is told, as the SDK tells it by default ...
    assert second.final_output == "tool said: " + default_tool_error_function(
        None,  # type: ignore[arg-type]  # the default ignores its context; none is at hand
        RuntimeError("bank is closed"),
    )
    # ... and the evidence says the call failed, not that it succeeded
    assert live.outcome(request.id).outcome is Outcome.FAILED


async def test_a_tools_own_failure_function_still_answers_the_model(
    tools: SignoffTools, live: LiveServer
) -> None:
    def transfer_money(amount: int, to: str) -> str:  # auto tier at this amount
        """Always fails."""
        raise ValueError("no")

    agent = Agent(
        name="x",
        model=ScriptedModel("transfer_money", {"amount": 10, "to": "a"}),
        tools=[tools.tool(transfer_money, failure_error_function=lambda ctx, e: f"sorry: {e}")],
    )
    result = await Runner.run(agent, "go", run_config=NO_TRACING)
    assert result.final_output == "tool said: sorry: no"
    [request] = live.run(live.runtime.store.list_requests())
    assert live.outcome(request.id).outcome is Outcome.FAILED
