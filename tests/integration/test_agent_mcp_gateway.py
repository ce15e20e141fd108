"""The MCP gateway in front of a small MCP server (stdio subprocess, written for the test),
driven by a real ``mcp`` client session, against a real signoff server."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from adapters.agent import AsyncSignoff
from adapters.agent.mcp_gateway import Gateway
from bot.domain import Outcome, Status
from tests.integration.agent_server import LiveServer, live_server


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(tmp_path)


UPSTREAM = textwrap.dedent(
    """\
    import json, sys
    from mcp.server.mcpserver import MCPServer

    LOG = sys.argv[1]
    bank = MCPServer("bank")

    def record(tool, **args):
        with open(LOG, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"tool": tool, "args": args}) + "\\n")

    @bank.tool()
    def lookup_customer(customer_id: str) -> str:
        record("lookup_customer", customer_id=customer_id)
        return f"customer {customer_id}: Ada"

    @bank.tool()
    def transfer_money(amount: int, to: str) -> str:
        record("transfer_money", amount=amount, to=to)
        return f"sent {amount} to {to}"

    @bank.tool()
    def delete_repo(name: str) -> str:
        record("delete_repo", name=name)
        return "deleted"

    bank.run()
    """
)


def text(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


def executions(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def upstream(tmp_path: Path) -> tuple[StdioServerParameters, Path]:
    script = tmp_path / "bank_server.py"
    script.write_text(UPSTREAM)
    log = tmp_path / "executions.jsonl"
    return StdioServerParameters(command=sys.executable, args=[str(script), str(log)]), log


@asynccontextmanager
async def gated(
    live: LiveServer, params: StdioServerParameters, hold: float = 10
) -> AsyncIterator[tuple[Gateway, Client]]:
    """The gateway (in front of the stdio upstream) and a client session connected to it
    through the SDK's in-memory JSON-RPC transport. A context manager, not a fixture: anyio
    cancel scopes must be entered and left in the same task."""
    async with AsyncSignoff(live.url, live.register("mcp-agent")) as signoff, Client(params) as up:
        gateway = Gateway(signoff, up, hold=hold)
        async with Client(gateway.server(), mode="legacy") as session:
            yield gateway, session


async def test_list_passthrough_auto_forwarded_and_block_is_a_tool_error(
    live: LiveServer, upstream: tuple[StdioServerParameters, Path]
) -> None:
    params, log = upstream
    async with gated(live, params) as (_, session):
        tools = await session.list_tools()
        assert {t.name for t in tools.tools} == {"lookup_customer", "transfer_money", "delete_repo"}

        ok = await session.call_tool("lookup_customer", {"customer_id": "c-7"})
        assert not ok.is_error and "customer c-7: Ada" in text(ok)

        blocked = await session.call_tool("delete_repo", {"name": "core"})
        assert blocked.is_error
        assert "blocked by policy: repositories are never deleted by agents" in text(blocked)
    assert executions(log) == [{"tool": "lookup_customer", "args": {"customer_id": "c-7"}}]


async def test_confirm_call_is_held_and_forwarded_once_approved(
    live: LiveServer, upstream: tuple[StdioServerParameters, Path]
) -> None:
    params, log = upstream
    decided = live.in_background(lambda r: live.approve(r.id))
    async with gated(live, params) as (_, session):
        result = await session.call_tool("transfer_money", {"amount": 5000, "to": "acct-1"})
    assert not result.is_error and "sent 5000 to acct-1" in text(result)
    request = live.outcome(decided.result(5).id)
    assert request.status is Status.APPROVED and request.outcome is Outcome.SUCCEEDED
    assert executions(log) == [{"tool": "transfer_money", "args": {"amount": 5000, "to": "acct-1"}}]


async def test_an_edited_approval_forwards_the_edited_call_and_tells_the_model(
    live: LiveServer, upstream: tuple[StdioServerParameters, Path]
) -> None:
    params, log = upstream
    edited = {"amount": 1500, "to": "acct-1"}
    decided = live.in_background(lambda r: live.approve_edited(r.id, edited))
    async with gated(live, params) as (_, session):
        result = await session.call_tool("transfer_money", {"amount": 5000, "to": "acct-1"})
    assert not result.is_error
    said = text(result)
    assert said.startswith("A human approver edited the arguments")
    assert '{"amount": 1500, "to": "acct-1"}' in said and "sent 1500 to acct-1" in said
    request = live.outcome(decided.result(5).id)
    assert request.outcome is Outcome.SUCCEEDED
    assert executions(log) == [{"tool": "transfer_money", "args": edited}]  # once, as edited


async def test_retry_of_the_same_call_picks_up_the_pending_decision(
    live: LiveServer, upstream: tuple[StdioServerParameters, Path]
) -> None:
    params, log = upstream
    args = {"amount": 7000, "to": "acct-2"}
    async with gated(live, params, hold=0.3) as (_, session):
        first = await session.call_tool("transfer_money", args)
        [pending] = live.pending()
        assert first.is_error and pending.id in text(first)
        assert "waiting for human approval" in text(first)

        again = await session.call_tool("transfer_money", args)  # still undecided
        assert again.is_error and pending.id in text(again)
        assert [r.id for r in live.pending()] == [pending.id]  # no second request

        await asyncio.to_thread(live.approve, pending.id)
        done = await session.call_tool("transfer_money", args)
        assert not done.is_error and "sent 7000 to acct-2" in text(done)

        # a later identical call is a new call: it needs its own approval
        later = await session.call_tool("transfer_money", args)
        assert later.is_error and pending.id not in text(later)
    assert executions(log) == [{"tool": "transfer_money", "args": args}]
    all_requests = live.run(live.runtime.store.list_requests())
    assert len(all_requests) == 2


async def test_a_restarted_gateway_picks_up_the_pending_decision(
    live: LiveServer, upstream: tuple[StdioServerParameters, Path]
) -> None:
    params, log = upstream
    args = {"amount": 7500, "to": "acct-9"}
    token = live.register("mcp-agent")

    @asynccontextmanager
    async def gateway() -> AsyncIterator[Client]:
        async with (
            AsyncSignoff(live.url, token) as signoff,
            Client(params) as up,
            Client(Gateway(signoff, up, hold=0.3).server(), mode="legacy") as session,
        ):
            yield session

    async with gateway() as session:  # the first gateway process
        first = await session.call_tool("transfer_money", args)
        [pending] = live.pending()
        assert first.is_error and pending.id in text(first)
    await asyncio.to_thread(live.approve, pending.id)
    async with gateway() as session:  # a new one: nothing of the first survives in memory
        again = await session.call_tool("transfer_money", args)
        assert not again.is_error and "sent 7500 to acct-9" in text(again)
        assert live.outcome(pending.id).outcome is Outcome.SUCCEEDED
    async with gateway() as session:  # and once used up, the same call asks anew
        later = await session.call_tool("transfer_money", args)
        assert later.is_error and pending.id not in text(later)
        denied = live.pending()[0]
        await asyncio.to_thread(live.deny, denied.id, "not today")
    async with gateway() as session:  # a refusal decided meanwhile is shown once
        shown = await session.call_tool("transfer_money", args)
        assert shown.is_error and "not today" in text(shown)
        fresh = await session.call_tool("transfer_money", args)
        assert fresh.is_error and "waiting for human approval" in text(fresh)
    assert executions(log) == [{"tool": "transfer_money", "args": args}]
    assert len(live.run(live.runtime.store.list_requests())) == 3


async def test_denied_call_returns_the_reason_and_never_reaches_the_tool(
    live: LiveServer, upstream: tuple[StdioServerParameters, Path]
) -> None:
    params, log = upstream
    args = {"amount": 9000, "to": "acct-3"}
    async with gated(live, params, hold=0.3) as (_, session):
        first = await session.call_tool("transfer_money", args)
        assert first.is_error
        [pending] = live.pending()
        await asyncio.to_thread(live.deny, pending.id, "acct-3 is not a known vendor")
        retry = await session.call_tool("transfer_money", args)
    assert retry.is_error
    assert "denied by a human approver: acct-3 is not a known vendor" in text(retry)
    assert executions(log) == []


async def test_signoff_unreachable_fails_closed(
    upstream: tuple[StdioServerParameters, Path],
) -> None:
    params, log = upstream
    async with AsyncSignoff("http://127.0.0.1:9", "so_x") as dead, Client(params) as up:
        gateway = Gateway(dead, up, hold=1)
        async with Client(gateway.server(), mode="legacy") as session:
            result = await session.call_tool("lookup_customer", {"customer_id": "c-1"})
    assert result.is_error and "unavailable" in text(result)
    assert executions(log) == []


@pytest.mark.slow
async def test_cli_gateway_over_stdio(
    live: LiveServer, upstream: tuple[StdioServerParameters, Path], tmp_path: Path
) -> None:
    params, log = upstream
    token_file = tmp_path / "agent.token"
    token_file.write_text(live.register("cli-agent") + "\n")
    signoff_bin = str(Path(sys.executable).with_name("signoff"))
    gateway = StdioServerParameters(
        command=signoff_bin,
        args=[
            "mcp-gateway",
            "--url",
            live.url,
            "--token-file",
            str(token_file),
            "--hold",
            "5",
            "--",
            params.command,
            *params.args,
        ],
        env={"PATH": os.environ.get("PATH", "")},
    )
    decided = live.in_background(lambda r: live.approve(r.id))
    async with Client(gateway) as session:
        assert "transfer_money" in {t.name for t in (await session.list_tools()).tools}
        result = await session.call_tool("transfer_money", {"amount": 1500, "to": "acct-4"})
    assert not result.is_error and "sent 1500 to acct-4" in text(result)
    assert decided.result(5).call.arguments == {"amount": 1500, "to": "acct-4"}
    assert len(executions(log)) == 1


async def test_streamable_http_upstream_with_a_tool_prefix(
    live: LiveServer, upstream: tuple[StdioServerParameters, Path], tmp_path: Path
) -> None:
    """The same upstream served over streamable HTTP; the gateway names tools for signoff
    with a prefix (``bank.lookup_customer`` is unknown to the policy, so it needs approval)."""
    params, log = upstream
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = tmp_path / "bank_http.py"
    script.write_text(
        Path(params.args[0])
        .read_text()
        .replace("bank.run()", f'bank.run("streamable-http", host="127.0.0.1", port={port})')
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            await asyncio.sleep(0.05)
        decided = live.in_background(lambda r: live.approve(r.id))
        async with (
            AsyncSignoff(live.url, live.register("http-agent")) as signoff,
            Client(f"http://127.0.0.1:{port}/mcp") as up,
        ):
            gateway = Gateway(signoff, up, hold=10, prefix="bank.")
            async with Client(gateway.server(), mode="legacy") as session:
                result = await session.call_tool("lookup_customer", {"customer_id": "c-9"})
        assert not result.is_error and "customer c-9: Ada" in text(result)
        request = decided.result(5)
        assert request.call.tool == "bank.lookup_customer" and request.tier.value == "confirm"
        assert executions(log) == [{"tool": "lookup_customer", "args": {"customer_id": "c-9"}}]
    finally:
        proc.terminate()
        proc.wait(10)
