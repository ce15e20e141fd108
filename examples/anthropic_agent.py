"""Anthropic SDK: a tool-use loop whose tool-execution step goes through signoff.

.venv/bin/python examples/anthropic_agent.py          # scripted Messages API
ANTHROPIC_API_KEY=... .venv/bin/python examples/anthropic_agent.py --live claude-...
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

import anthropic
import httpx2
from demo_home import token, url

from adapters.agent import Approvals, Signoff
from adapters.agent.integrations.anthropic import run_tool_uses

TOOLS: list[Any] = [
    {
        "name": "transfer_money",
        "description": "Send money to an account.",
        "input_schema": {
            "type": "object",
            "required": ["amount", "currency", "to"],
            "properties": {
                "amount": {"type": "integer"},
                "currency": {"type": "string"},
                "to": {"type": "string"},
            },
        },
    }
]


def transfer_money(amount: int, currency: str, to: str) -> str:
    return f"transferred {amount} {currency} to {to}"


def scripted() -> anthropic.Anthropic:
    """A stand-in Messages API: asks for the transfer, then reports the tool result."""

    def handle(request: httpx2.Request) -> httpx2.Response:
        last = json.loads(request.content)["messages"][-1]["content"]
        results = [c for c in last if isinstance(c, dict) and c.get("type") == "tool_result"]
        content: list[dict[str, Any]] = (
            [{"type": "text", "text": f"Result: {results[0]['content']}"}]
            if results
            else [
                {
                    "type": "tool_use",
                    "id": f"toolu_{uuid.uuid4().hex[:16]}",
                    "name": "transfer_money",
                    "input": {"amount": 25000, "currency": "USD", "to": "acct-123"},
                }
            ]
        )
        return httpx2.Response(
            200,
            json={
                "id": "msg_demo",
                "type": "message",
                "role": "assistant",
                "model": "scripted",
                "content": content,
                "stop_reason": "end_turn" if results else "tool_use",
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 1},
            },
        )

    return anthropic.Anthropic(
        api_key="scripted", http_client=httpx2.Client(transport=httpx2.MockTransport(handle))
    )


def main() -> None:
    live = sys.argv[1:2] == ["--live"]
    api = anthropic.Anthropic() if live else scripted()
    model = sys.argv[2] if live else "scripted"
    approvals = Approvals(Signoff(url(), token()))
    messages: list[Any] = [{"role": "user", "content": "Refund order 8812: 25000 USD to acct-123"}]
    while True:
        response = api.messages.create(model=model, max_tokens=512, messages=messages, tools=TOOLS)
        if response.stop_reason != "tool_use":
            print("".join(b.text for b in response.content if b.type == "text"))
            return
        print("waiting for a signoff decision (console: alice) ...")
        results = run_tool_uses(
            approvals,
            response,
            {"transfer_money": transfer_money},
            names={"transfer_money": "payments.transfer"},
        )
        messages += [
            {"role": "assistant", "content": response.content},
            {"role": "user", "content": results},
        ]


if __name__ == "__main__":
    main()
