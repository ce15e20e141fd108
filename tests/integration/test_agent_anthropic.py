"""The Anthropic SDK tool-use loop with signoff at the tool-execution step. The Messages API
is scripted through an ``httpx.MockTransport`` (no hosted model); signoff is real."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anthropic
import httpx2 as httpx
import pytest
from anthropic.types import AssistantMessageParam, MessageParam, ToolParam, UserMessageParam

from adapters.agent import Approvals, AsyncApprovals, AsyncSignoff, Signoff
from adapters.agent.integrations.anthropic import arun_tool_uses, run_tool_uses
from bot.domain import Outcome
from tests.integration.agent_server import LiveServer, live_server

TOOLS: list[ToolParam] = [
    {
        "name": "transfer_money",
        "description": "Send money.",
        "input_schema": {
            "type": "object",
            "properties": {"amount": {"type": "integer"}, "to": {"type": "string"}},
        },
    },
]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(tmp_path)


def scripted_api(
    tool: str, args: dict[str, Any], seen: list[dict[str, Any]]
) -> anthropic.Anthropic:
    """A Messages API that asks for one tool call, then echoes the tool result as text."""

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        last = body["messages"][-1]
        results = (
            [c for c in last["content"] if isinstance(c, dict) and c.get("type") == "tool_result"]
            if isinstance(last["content"], list)
            else []
        )
        if results:
            text = ("ERROR " if results[0].get("is_error") else "") + str(results[0]["content"])
            content: list[dict[str, Any]] = [{"type": "text", "text": text}]
            stop = "end_turn"
        else:
            content = [
                {
                    "type": "tool_use",
                    "id": f"toolu_{uuid.uuid4().hex[:16]}",
                    "name": tool,
                    "input": args,
                }
            ]
            stop = "tool_use"
        return httpx.Response(
            200,
            json={
                "id": f"msg_{len(seen)}",
                "type": "message",
                "role": "assistant",
                "model": "claude-test",
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 1},
            },
        )

    http = httpx.Client(transport=httpx.MockTransport(handle))
    return anthropic.Anthropic(api_key="test-key", http_client=http, max_retries=0)


def agent_loop(
    api: anthropic.Anthropic, approvals: Approvals, tools: dict[str, Any], before: Any = None
) -> str:
    messages: list[MessageParam] = [{"role": "user", "content": "do it"}]
    while True:
        response = api.messages.create(
            model="claude-test", max_tokens=100, messages=messages, tools=TOOLS
        )
        if response.stop_reason != "tool_use":
            return "".join(b.text for b in response.content if b.type == "text")
        if before is not None:
            before(response)
        # the SDK returns the tool_result blocks as plain dicts (no anthropic import needed)
        results: list[Any] = run_tool_uses(approvals, response, tools)
        asked: AssistantMessageParam = {"role": "assistant", "content": response.content}
        answered: UserMessageParam = {"role": "user", "content": results}
        messages += [asked, answered]


def make_tools(ran: list[Any]) -> dict[str, Any]:
    def transfer_money(amount: int, to: str) -> str:
        ran.append({"amount": amount, "to": to})
        return f"sent {amount} to {to}"

    def delete_repo(name: str) -> str:
        ran.append(name)
        return "deleted"

    return {"transfer_money": transfer_money, "delete_repo": delete_repo}


def test_auto_call_runs(live: LiveServer) -> None:
    ran: list[Any] = []
    api = scripted_api("transfer_money", {"amount": 10, "to": "a"}, [])
    out = agent_loop(api, Approvals(Signoff(live.url, live.register())), make_tools(ran))
    assert out == "sent 10 to a" and ran == [{"amount": 10, "to": "a"}]


def test_confirm_waits_and_runs_once_with_the_approved_arguments(live: LiveServer) -> None:
    ran: list[Any] = []
    api = scripted_api("transfer_money", {"amount": 5000, "to": "acct-1"}, [])
    decided = live.in_background(lambda r: live.approve(r.id))
    out = agent_loop(
        api, Approvals(Signoff(live.url, live.register()), timeout=10), make_tools(ran)
    )
    assert out == "sent 5000 to acct-1" and ran == [{"amount": 5000, "to": "acct-1"}]
    request = live.outcome(decided.result(5).id)
    assert request.call.arguments == {"amount": 5000, "to": "acct-1"}
    assert request.outcome is Outcome.SUCCEEDED


def test_an_edited_approval_runs_the_edited_arguments_and_tells_the_model(
    live: LiveServer,
) -> None:
    ran: list[Any] = []
    seen: list[dict[str, Any]] = []
    api = scripted_api("transfer_money", {"amount": 5000, "to": "acct-1"}, seen)
    decided = live.in_background(
        lambda r: live.approve_edited(r.id, {"amount": 1500, "to": "acct-1"})
    )
    out = agent_loop(
        api, Approvals(Signoff(live.url, live.register()), timeout=10), make_tools(ran)
    )
    assert ran == [{"amount": 1500, "to": "acct-1"}]  # the approver's version, once
    assert not out.startswith("ERROR ")
    assert "A human approver edited the arguments" in out
    assert '{"amount": 1500, "to": "acct-1"}' in out and out.endswith("sent 1500 to acct-1")
    request = live.outcome(decided.result(5).id)
    assert request.call.arguments == {"amount": 5000, "to": "acct-1"}  # what the model asked
    assert request.outcome is Outcome.SUCCEEDED  # the grant (bound to the edit) was used


def test_denial_and_block_reach_the_model_as_tool_errors(live: LiveServer) -> None:
    ran: list[Any] = []
    approvals = Approvals(Signoff(live.url, live.register()), timeout=10)
    live.in_background(lambda r: live.deny(r.id, "x is not a vendor"))
    out = agent_loop(
        scripted_api("transfer_money", {"amount": 9000, "to": "x"}, []), approvals, make_tools(ran)
    )
    assert out.startswith("ERROR ") and "denied by a human approver: x is not a vendor" in out
    out = agent_loop(scripted_api("delete_repo", {"name": "core"}, []), approvals, make_tools(ran))
    assert out.startswith("ERROR ") and "repositories are never deleted by agents" in out
    assert ran == []


def test_input_tampered_while_waiting_is_refused(live: LiveServer) -> None:
    ran: list[Any] = []
    blocks: list[Any] = []

    def tamper(_request: Any) -> None:
        blocks[0].input["to"] = "attacker"  # the block's input changes after the request

    decided = live.in_background(lambda r: live.approve(r.id), before=tamper)
    api = scripted_api("transfer_money", {"amount": 5000, "to": "acct-1"}, [])
    out = agent_loop(
        api,
        Approvals(Signoff(live.url, live.register()), timeout=10),
        make_tools(ran),
        before=lambda response: blocks.extend(response.content),
    )
    assert out.startswith("ERROR ") and "not run because its approval does not cover it" in out
    assert ran == []
    assert live.outcome(decided.result(5).id).grant_used_at is None


async def test_async_step_runs_async_tools_with_the_edited_arguments(live: LiveServer) -> None:
    """``arun_tool_uses`` (``AsyncAnthropic`` loops) takes the same path with async tools."""
    ran: list[Any] = []

    async def transfer_money(amount: int, to: str) -> str:
        ran.append({"amount": amount, "to": to})
        return f"sent {amount} to {to}"

    def block(amount: int) -> SimpleNamespace:
        return SimpleNamespace(
            type="tool_use",
            id=f"toolu_{uuid.uuid4().hex[:16]}",
            name="transfer_money",
            input={"amount": amount, "to": "acct-1"},
        )

    message = SimpleNamespace(content=[block(10), block(5000)])
    live.in_background(lambda r: live.approve_edited(r.id, {"amount": 1500, "to": "acct-1"}))
    async with AsyncSignoff(live.url, live.register()) as client:
        results = await arun_tool_uses(
            AsyncApprovals(client, timeout=10), message, {"transfer_money": transfer_money}
        )
    auto, edited = results
    assert auto["content"] == "sent 10 to acct-1" and "is_error" not in auto
    assert str(edited["content"]).startswith("A human approver edited the arguments")
    assert str(edited["content"]).endswith("sent 1500 to acct-1")
    assert ran == [{"amount": 10, "to": "acct-1"}, {"amount": 1500, "to": "acct-1"}]
