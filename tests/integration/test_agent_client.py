"""The agent client, ``require_approval`` and callbacks against a real signoff server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from adapters.agent import (
    AsyncSignoff,
    Blocked,
    Denied,
    GrantRefused,
    Pending,
    Signoff,
    Unavailable,
    require_approval,
)
from adapters.agent.grants import GrantVerifier
from adapters.agent.webhooks import WebhookError, verify
from bot.domain import Outcome, Status
from bot.evidence.keys import PublicKeys
from tests.integration.agent_server import LiveServer, live_server


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    yield from live_server(tmp_path)


def test_sync_wrapper_auto_call_runs_with_a_verified_grant(live: LiveServer) -> None:
    client = Signoff(live.url, live.register())
    calls: list[str] = []

    @require_approval(client)
    def lookup_customer(customer_id: str, fields: tuple[str, ...] = ("name",)) -> str:
        calls.append(customer_id)
        return f"customer {customer_id}"

    assert lookup_customer("c-1") == "customer c-1"
    assert calls == ["c-1"]
    [request] = live.run(live.runtime.store.list_requests(status=Status.APPROVED))
    assert request.call.tool == "lookup_customer"
    assert request.call.arguments == {"customer_id": "c-1", "fields": ["name"]}
    assert request.outcome is Outcome.SUCCEEDED and request.grant_used_at is not None


def test_sync_wrapper_confirm_waits_and_runs_once_with_the_approved_arguments(
    live: LiveServer,
) -> None:
    client = Signoff(live.url, live.register())
    ran: list[dict[str, Any]] = []

    @require_approval(client, justification=lambda a: f"refund {a['to']}")
    def transfer_money(amount: int, to: str) -> str:
        ran.append({"amount": amount, "to": to})
        return "sent"

    decided = live.in_background(lambda r: live.approve(r.id))
    # the decorator adds ``signoff_context=``; a ParamSpec cannot declare an added keyword
    # (PEP 612), so the wrapper's declared signature is the function's own
    sent = transfer_money(25_000, "acct-9", signoff_context={"ticket": "T-1"})  # type: ignore[call-arg]
    assert sent == "sent"
    request = decided.result(10)
    assert request.call.arguments == {"amount": 25_000, "to": "acct-9"}
    assert request.call.justification == "refund acct-9"
    assert request.call.context == {"ticket": "T-1"}
    assert ran == [{"amount": 25_000, "to": "acct-9"}]
    final = live.outcome(request.id)
    assert final.outcome is Outcome.SUCCEEDED
    # the grant was consumed by `started`: it cannot run a second time
    with pytest.raises(Exception, match="409"):
        client.report(request.id, final.grant or "", "started")


async def test_async_wrapper_denial_raises_with_the_reason_and_never_runs(
    live: LiveServer,
) -> None:
    ran: list[int] = []
    async with AsyncSignoff(live.url, live.register()) as client:

        @require_approval(client)
        async def transfer_money(amount: int, to: str) -> str:
            ran.append(amount)
            return "sent"

        live.in_background(lambda r: live.deny(r.id, "vendor not on the allow list"))
        with pytest.raises(Denied) as caught:
            await transfer_money(5000, "acct-1")
    assert ran == []
    assert "denied by a human approver: vendor not on the allow list" in str(caught.value)


async def test_blocked_call_is_refused_at_once(live: LiveServer) -> None:
    async with AsyncSignoff(live.url, live.register()) as client:

        @require_approval(client)
        async def delete_repo(name: str) -> None:
            raise AssertionError("must not run")

        with pytest.raises(Blocked, match="never deleted by agents"):
            await delete_repo("core")


def test_arguments_changed_after_approval_are_refused(live: LiveServer) -> None:
    client = Signoff(live.url, live.register())
    ran: list[Any] = []
    payload = {"lines": [1, 2]}

    @require_approval(client)
    def transfer_money(amount: int, memo: dict[str, Any]) -> None:
        ran.append(memo)

    def tamper(_request: Any) -> None:
        payload["lines"].append(3)  # the caller's object changes while approval is pending

    decided = live.in_background(lambda r: live.approve(r.id), before=tamper)
    with pytest.raises(GrantRefused, match="different arguments"):
        transfer_money(2000, payload)
    assert ran == []
    request = live.outcome(decided.result(10).id)
    assert request.status is Status.APPROVED and request.grant_used_at is None


def test_offline_verification_catches_a_grant_for_other_arguments(live: LiveServer) -> None:
    client = Signoff(live.url, live.register())
    state = client.request("lookup_customer", {"customer_id": "a"})
    verifier = GrantVerifier(client.jwks)
    assert verifier.verify(state, "lookup_customer", {"customer_id": "a"})["jti"] == state.id
    with pytest.raises(GrantRefused, match="different arguments"):
        verifier.verify(state, "lookup_customer", {"customer_id": "b"})
    with pytest.raises(GrantRefused, match="different tool"):
        verifier.verify(state, "lookup_orders", {"customer_id": "a"})


async def test_wait_times_out_as_pending_and_an_unreachable_server_is_unavailable(
    live: LiveServer,
) -> None:
    async with AsyncSignoff(live.url, live.register()) as client:
        with pytest.raises(Pending) as caught:
            await client.request("transfer_money", {"amount": 9999, "to": "x"}, timeout=0.3)
        assert caught.value.request_id is not None
    async with AsyncSignoff("http://127.0.0.1:9", "so_x") as dead:
        with pytest.raises(Unavailable):
            await dead.submit("lookup_customer", {})


async def test_callback_is_signed_per_standard_webhooks_and_verifies_with_v1_keys(
    live: LiveServer, aiohttp_server: Any
) -> None:
    received: list[tuple[bytes, dict[str, str]]] = []
    arrived = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), dict(request.headers)))
        arrived.set()
        # the first delivery fails: the retry must carry the same webhook-id
        return web.Response(status=500 if len(received) == 1 else 204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    live.callbacks.delays = (0.05,)
    async with AsyncSignoff(live.url, live.register()) as client:
        state = await client.submit(
            "transfer_money",
            {"amount": 5000, "to": "y"},
            callback_url=str(server.make_url("/hook")),
        )
        await asyncio.to_thread(live.approve, state.id)
        for _ in range(200):
            if len(received) >= 2:
                break
            await asyncio.sleep(0.02)
        keys = PublicKeys.from_jwks(await client.jwks())
    assert len(received) == 2
    (_, first), (body, headers) = received
    assert first["webhook-id"] == headers["webhook-id"] == f"{state.id}.approved"
    data = verify(body, headers, keys)
    assert data["id"] == state.id and data["status"] == "approved" and data["grant"]
    with pytest.raises(WebhookError):
        verify(body.replace(b"approved", b"denied__"), headers, keys)
    with pytest.raises(WebhookError, match="window"):
        verify(body, headers, keys, now=int(headers["webhook-timestamp"]) + 3600)


def test_sync_client_is_thread_safe_enough_for_parallel_auto_calls(live: LiveServer) -> None:
    client = Signoff(live.url, live.register())
    results: list[str] = []

    @require_approval(client)
    def lookup_customer(customer_id: str) -> str:
        return customer_id

    threads = [
        threading.Thread(target=lambda i=i: results.append(lookup_customer(f"c{i}")))
        for i in range(5)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [f"c{i}" for i in range(5)]
