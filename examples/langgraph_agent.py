"""LangGraph: the signoff tools node pauses the graph with interrupt(); another process
resumes it from the SQLite checkpointer once signoff has a decision.

    .venv/bin/python examples/langgraph_agent.py start    # runs until the approval interrupt
    .venv/bin/python examples/langgraph_agent.py resume   # (any process) waits, then resumes

A fake chat model stands in for the LLM (swap in any chat model).
"""

from __future__ import annotations

import sqlite3
import sys
from typing import Annotated, Any, TypedDict

from demo_home import ROOT, token, url
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
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

DB = ROOT / ".demo" / "langgraph-checkpoints.db"
CONFIG = {"configurable": {"thread_id": "demo-thread"}}


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


@tool
def transfer_money(amount: int, currency: str, to: str) -> str:
    """Send money to an account."""
    return f"transferred {amount} {currency} to {to}"


def build(client: Signoff, *, resumed: bool = False) -> Any:
    # The fake model's script: ask for the transfer, then answer once the tool has run.
    ask = AIMessage(
        "",
        tool_calls=[
            {
                "name": "transfer_money",
                "id": "call-demo-1",
                "args": {"amount": 25000, "currency": "USD", "to": "acct-123"},
            }
        ],
    )
    model = FakeMessagesListChatModel(
        responses=[AIMessage("Done.")] if resumed else [ask, AIMessage("Done.")]
    )

    def agent(state: State) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def route(state: State) -> str:
        last = state["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else END

    graph = StateGraph(State)
    graph.add_node("agent", agent)
    graph.add_node(
        "tools",
        signoff_tools_node(
            Approvals(client), [transfer_money], names={"transfer_money": "payments.transfer"}
        ),
    )
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", route, ["tools", END])
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=SqliteSaver(sqlite3.connect(DB, check_same_thread=False)))


if __name__ == "__main__":
    client = Signoff(url(), token())
    resumed = sys.argv[1:] == ["resume"]
    graph = build(client, resumed=resumed)
    if resumed:
        result = resume_when_decided(graph, CONFIG, client)
        for message in result["messages"]:
            print(type(message).__name__, getattr(message, "status", ""), message.content)
    else:
        graph.invoke({"messages": [HumanMessage("Refund order 8812")]}, CONFIG)
        print("paused; waiting for signoff requests:", pending_requests(graph.get_state(CONFIG)))
        print("approve in the console, then run: examples/langgraph_agent.py resume")
