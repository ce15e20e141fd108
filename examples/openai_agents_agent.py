"""OpenAI Agents SDK: a ``needs_approval`` tool whose interruption signoff resolves; the
RunState is saved to a file across the wait and resumed (possibly in another process).

    .venv/bin/python examples/openai_agents_agent.py

A scripted Model stands in for the LLM (use ``model="gpt-..."`` with an API key instead).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agents import Agent, Model, ModelResponse, RunConfig, Runner, RunState, Usage
from demo_home import ROOT, token, url
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from adapters.agent import AsyncApprovals, AsyncSignoff
from adapters.agent.integrations.openai_agents import SignoffTools

STATE = ROOT / ".demo" / "openai-agents-state.json"
RUN = RunConfig(tracing_disabled=True)


class ScriptedModel(Model):
    async def get_response(
        self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any
    ) -> ModelResponse:
        done = [i for i in input if isinstance(i, dict) and i.get("type") == "function_call_output"]
        if done:
            text = ResponseOutputText(
                type="output_text", text=f"Result: {done[-1]['output']}", annotations=[]
            )
            return ModelResponse(
                output=[
                    ResponseOutputMessage(
                        id="m1",
                        type="message",
                        role="assistant",
                        status="completed",
                        content=[text],
                    )
                ],
                usage=Usage(),
                response_id=None,
            )
        call = ResponseFunctionToolCall(
            type="function_call",
            name="transfer_money",
            call_id=f"call-{id(self)}",
            arguments=json.dumps({"amount": 25000, "currency": "USD", "to": "acct-123"}),
        )
        return ModelResponse(output=[call], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


async def transfer_money(amount: int, currency: str, to: str) -> str:
    """Send money to an account."""
    return f"transferred {amount} {currency} to {to}"


async def main() -> None:
    async with AsyncSignoff(url(), token()) as client:
        tools = SignoffTools(AsyncApprovals(client))
        agent = Agent(
            name="payer",
            model=ScriptedModel(),
            tools=[tools.tool(transfer_money, signoff_name="payments.transfer")],
        )
        result = await Runner.run(agent, "Refund order 8812", run_config=RUN)
        if result.interruptions:
            STATE.write_text(result.to_state().to_string())
            print("waiting for a signoff decision (console: alice) ...")
            state = await RunState.from_string(agent, STATE.read_text())
            await tools.resolve(state)
            result = await Runner.run(agent, state, run_config=RUN)
        print(result.final_output)


if __name__ == "__main__":
    asyncio.run(main())
