"""LangGraph with the signoff tools node, a fake chat model emitting tool calls, a SQLite
checkpointer shared by two separately built graphs (as two processes would), against a real
signoff server."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from adapters.agent import Approvals, Signoff
from adapters.agent.integrations.langgraph import (
    pending_requests,
    resume_when_decided,
    signoff_tools_node,
)
from bot.domain import Outcome
from tests.integration.agent_server import LiveServer, live_server


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(tmp_path)


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


RAN: list[dict[str, Any]] = []


@tool
def transfer_money(amount: int, to: str) -> str:
    """Send money to an account."""
    RAN.append({"amount": amount, "to": to})
    return f"sent {amount} to {to}"


@tool
def lookup_customer(customer_id: str) -> str:
    """Look a customer up."""
    RAN.append({"customer_id": customer_id})
    return f"customer {customer_id}: Ada"


def call(name: str, args: dict[str, Any], call_id: str = "call-1") -> AIMessage:
    return AIMessage(
        content="", id="ai-1", tool_calls=[{"name": name, "args": args, "id": call_id}]
    )


def build(db: Path, client: Signoff, responses: list[BaseMessage]) -> Any:
    """One 'process': its own model, node, graph and checkpointer connection."""
    model = FakeMessagesListChatModel(responses=responses)

    def agent(state: State) -> dict[str, list[AnyMessage]]:
        return {"messages": [model.invoke(state["messages"])]}

    def route(state: State) -> str:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else END

    graph = StateGraph(State)
    graph.add_node("agent", agent)
    node = signoff_tools_node(Approvals(client), [transfer_money, lookup_customer])
    # LangGraph's node protocols bind the state to a TypedDict-like type and name the
    # parameters; the SDK's node takes any mapping positionally, which LangGraph accepts
    graph.add_node("tools", node)  # type: ignore[arg-type]
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route, ["tools", END])
    graph.add_edge("tools", "agent")
    saver = SqliteSaver(sqlite3.connect(db, check_same_thread=False))
    return graph.compile(checkpointer=saver)


@pytest.fixture(autouse=True)
def _reset() -> None:
    RAN.clear()


def tool_messages(result: Any) -> list[ToolMessage]:
    return [m for m in result["messages"] if isinstance(m, ToolMessage)]


def test_auto_call_runs_without_pausing(live: LiveServer, tmp_path: Path) -> None:
    client = Signoff(live.url, live.register())
    graph = build(
        tmp_path / "cp.db",
        client,
        [call("lookup_customer", {"customer_id": "c-1"}), AIMessage("done")],
    )
    config: RunnableConfig = {"configurable": {"thread_id": "t-auto"}}
    result = graph.invoke({"messages": [HumanMessage("who is c-1?")]}, config)
    [message] = tool_messages(result)
    assert message.status == "success" and message.content == "customer c-1: Ada"
    assert RAN == [{"customer_id": "c-1"}]


def test_confirm_pauses_and_resumes_in_another_graph_after_approval(
    live: LiveServer, tmp_path: Path
) -> None:
    db = tmp_path / "cp.db"
    client = Signoff(live.url, live.register())
    config: RunnableConfig = {"configurable": {"thread_id": "t-1"}}
    first = build(db, client, [call("transfer_money", {"amount": 5000, "to": "acct-1"})])
    paused = first.invoke({"messages": [HumanMessage("pay acct-1")]}, config)
    assert "__interrupt__" in paused and RAN == []

    # another process: a new graph over the same checkpoint database
    second = build(db, client, [AIMessage("paid")])
    [request_id] = pending_requests(second.get_state(config))
    live.approve(request_id)
    result = resume_when_decided(second, config, client, timeout=10)
    [message] = tool_messages(result)
    assert message.content == "sent 5000 to acct-1"
    assert result["messages"][-1].content == "paid"
    assert RAN == [{"amount": 5000, "to": "acct-1"}]
    assert live.outcome(request_id).outcome is Outcome.SUCCEEDED


def test_an_edited_approval_runs_the_edited_arguments_and_tells_the_model(
    live: LiveServer, tmp_path: Path
) -> None:
    db = tmp_path / "cp.db"
    client = Signoff(live.url, live.register())
    config: RunnableConfig = {"configurable": {"thread_id": "t-edit"}}
    first = build(db, client, [call("transfer_money", {"amount": 5000, "to": "acct-1"})])
    first.invoke({"messages": [HumanMessage("pay acct-1")]}, config)
    second = build(db, client, [AIMessage("paid")])
    [request_id] = pending_requests(second.get_state(config))
    live.approve_edited(request_id, {"amount": 1500, "to": "acct-1"})
    result = resume_when_decided(second, config, client, timeout=10)
    [message] = tool_messages(result)
    assert message.status == "success"
    assert str(message.content).startswith("A human approver edited the arguments")
    assert '{"amount": 1500, "to": "acct-1"}' in str(message.content)
    assert str(message.content).endswith("sent 1500 to acct-1")
    assert RAN == [{"amount": 1500, "to": "acct-1"}]  # the approver's version, once
    assert live.outcome(request_id).outcome is Outcome.SUCCEEDED


def test_denial_reaches_the_model_as_a_tool_error(live: LiveServer, tmp_path: Path) -> None:
    db = tmp_path / "cp.db"
    client = Signoff(live.url, live.register())
    config: RunnableConfig = {"configurable": {"thread_id": "t-2"}}
    graph = build(
        db, client, [call("transfer_money", {"amount": 8000, "to": "x"}), AIMessage("ok, not paid")]
    )
    graph.invoke({"messages": [HumanMessage("pay x")]}, config)
    [request_id] = pending_requests(graph.get_state(config))
    live.deny(request_id, "x is not a vendor")
    result = resume_when_decided(graph, config, client, timeout=10)
    [message] = tool_messages(result)
    assert message.status == "error"
    assert "denied by a human approver: x is not a vendor" in str(message.content)
    assert RAN == []


def test_arguments_tampered_in_the_checkpoint_after_approval_are_refused(
    live: LiveServer, tmp_path: Path
) -> None:
    db = tmp_path / "cp.db"
    client = Signoff(live.url, live.register())
    config: RunnableConfig = {"configurable": {"thread_id": "t-3"}}
    graph = build(
        db, client, [call("transfer_money", {"amount": 5000, "to": "acct-1"}), AIMessage("stopped")]
    )
    graph.invoke({"messages": [HumanMessage("pay")]}, config)
    [request_id] = pending_requests(graph.get_state(config))
    live.approve(request_id)
    # someone with access to the checkpoint store rewrites the approved call
    graph.update_state(
        config,
        {"messages": [call("transfer_money", {"amount": 5000, "to": "attacker"})]},
        as_node="agent",
    )
    result = graph.invoke(None, config)
    [message] = tool_messages(result)
    assert message.status == "error" and "not run" in str(message.content)
    assert RAN == []
    assert live.outcome(request_id).grant_used_at is None
