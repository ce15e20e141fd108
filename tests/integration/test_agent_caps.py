"""Per-agent caps (SPEC §6) over real HTTP: pending requests and concurrent long-polls.

The security review held unlimited long-polls and parked unlimited pending requests from one
agent. With caps of 3 pending and 2 long-polls, the next one is a 429 with Retry-After that
records nothing, parallel submissions cannot slip past the cap, and other agents (and the
same agent's auto-tier calls) are unaffected.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest_asyncio
from pytest_aiohttp import AiohttpClient

from adapters.runtime import Runtime
from bot.domain import Status
from tests.support import AppClient, write_home

CONFIRM = {"tool": "payments.transfer", "arguments": {"amount": 25000, "to": "acct-1"}}


@pytest_asyncio.fixture
async def home(tmp_path: Path) -> Path:
    config = write_home(tmp_path)
    config.write_text(
        config.read_text().replace(
            'public_url: "http://127.0.0.1:8080"}',
            'public_url: "http://127.0.0.1:8080", max_pending_per_agent: 3, '
            "max_long_polls_per_agent: 2}",
        )
    )
    return config


async def post(client: AppClient, token: str, body: dict[str, Any]) -> Any:
    return await client.post(
        "/v1/requests", json=body, headers={"Authorization": f"Bearer {token}"}
    )


async def test_pending_requests_are_capped_per_agent(
    runtime: Runtime, aiohttp_client: AiohttpClient
) -> None:
    client = await aiohttp_client(runtime.app)
    _, token = await runtime.gate.register_agent("greedy")
    _, other = await runtime.gate.register_agent("other")
    for _ in range(3):
        assert (await post(client, token, CONFIRM)).status == 201
    over = await post(client, token, CONFIRM)
    assert over.status == 429 and int(over.headers["Retry-After"]) > 0
    assert (await over.json())["type"].endswith("rate-limited")
    pending = await runtime.store.list_requests(status=Status.PENDING, agent_id="greedy")
    assert len(pending) == 3
    # auto-tier calls of the same agent and other agents' requests go on
    assert (await post(client, token, {"tool": "crm.read", "arguments": {}})).status == 201
    assert (await post(client, other, CONFIRM)).status == 201
    # a decision frees a slot
    await client.post(
        f"/v1/requests/{pending[0].id}/cancel", headers={"Authorization": f"Bearer {token}"}
    )
    assert (await post(client, token, CONFIRM)).status == 201


async def test_parallel_submissions_cannot_slip_past_the_pending_cap(
    runtime: Runtime, aiohttp_client: AiohttpClient
) -> None:
    client = await aiohttp_client(runtime.app)
    _, token = await runtime.gate.register_agent("burst")
    answers = await asyncio.gather(*(post(client, token, CONFIRM) for _ in range(20)))
    statuses = sorted(a.status for a in answers)
    assert statuses == [201] * 3 + [429] * 17
    assert len(await runtime.store.list_requests(status=Status.PENDING, agent_id="burst")) == 3


async def test_concurrent_long_polls_are_capped_per_agent(
    runtime: Runtime, aiohttp_client: AiohttpClient
) -> None:
    client = await aiohttp_client(runtime.app)
    _, token = await runtime.gate.register_agent("poller")
    _, other = await runtime.gate.register_agent("other")
    auth = {"Authorization": f"Bearer {token}"}
    made = await (await post(client, token, CONFIRM)).json()
    mine = await (await post(client, other, CONFIRM)).json()
    url = f"/v1/requests/{made['id']}?wait=30"
    held = [asyncio.create_task(client.get(url, headers=auth)) for _ in range(2)]
    for _ in range(200):
        if runtime.gate.metrics.pending._value.get() >= 2:
            break
        await asyncio.sleep(0.01)
    third = await client.get(url, headers=auth)
    assert third.status == 429 and third.headers["Retry-After"] == "1"
    # another agent's long-poll is not affected
    theirs = asyncio.create_task(
        client.get(
            f"/v1/requests/{mine['id']}?wait=30", headers={"Authorization": f"Bearer {other}"}
        )
    )
    await asyncio.sleep(0.05)
    assert not theirs.done()
    # the decision releases the held polls; then a new one is accepted
    await client.post(f"/v1/requests/{made['id']}/cancel", headers=auth)
    for task in held:
        assert (await task).status == 200
    assert (await client.get(f"/v1/requests/{made['id']}?wait=1", headers=auth)).status == 200
    await client.post(
        f"/v1/requests/{mine['id']}/cancel", headers={"Authorization": f"Bearer {other}"}
    )
    assert (await theirs).status == 200
