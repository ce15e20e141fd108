"""The agent HTTP API through aiohttp's test server, on a real SQLite store (SPEC §6)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from adapters.main import build
from adapters.runtime import Runtime
from bench.serving import libpq
from bot.api.app import api_middleware
from bot.api.context import APP_GATE
from bot.domain import Approver, Platform, ToolCall, Verdict
from bot.evidence.canonical import arguments_sha256, call_sha256
from bot.evidence.grant import verify_grant
from bot.service import Submission
from bot.settings import load_settings
from tests.support import AppClient, until, write_home

PROBLEM = "application/problem+json"
ALICE = Approver(Platform.CONSOLE, "console", "alice", "Alice", via="console_login")
ERIN = Approver(Platform.CONSOLE, "console", "erin", "Erin", via="console_login")


@pytest_asyncio.fixture
async def token(runtime: Runtime) -> str:
    _, tok = await runtime.gate.register_agent("billing-agent")
    return tok


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


async def submit(client: AppClient, tok: str, body: Any, **headers: str) -> Any:
    return await client.post("/v1/requests", json=body, headers={**auth(tok), **headers})


async def test_auto_request_is_approved_with_a_grant_bound_to_the_call(
    client: AppClient,
    token: str,
    runtime: Runtime,
) -> None:
    args = {"id": 42, "note": "héllo \u202e\u0000 ✓"}
    resp = await submit(client, token, {"tool": "crm.read", "arguments": args})
    assert resp.status == 201
    body = await resp.json()
    assert body["status"] == "approved" and body["tier"] == "auto"
    assert body["policy"]["rule"] == "reads"
    assert body["policy"]["digest"] == runtime.policies.current.digest
    assert body["arguments_sha256"] == arguments_sha256(args)
    assert body["call_sha256"] == call_sha256(body["id"], "billing-agent", "crm.read", args)
    claims = verify_grant(
        body["grant"],
        runtime.keys,
        now=runtime.gate.clock.now(),
        request_id=body["id"],
        agent_id="billing-agent",
        tool="crm.read",
        arguments=args,
    )
    assert claims["sub"] == "billing-agent"


async def test_block_request_is_denied_with_the_rule_reason(
    client: AppClient,
    token: str,
) -> None:
    resp = await submit(
        client, token, {"tool": "repos.force_push", "arguments": {"branch": "main"}}
    )
    body = await resp.json()
    assert resp.status == 201
    assert body["status"] == "denied" and body["tier"] == "block"
    assert body["reason"] == "force-push to protected branches is never allowed"
    assert body["grant"] is None


async def test_long_poll_returns_as_soon_as_the_decision_lands(
    client: AppClient,
    token: str,
    runtime: Runtime,
) -> None:
    resp = await submit(
        client, token, {"tool": "payments.transfer", "arguments": {"amount": 25000}}
    )
    created = await resp.json()
    assert created["status"] == "pending" and created["approvals"] == {"required": 1, "received": 0}
    assert created["deadline"] is not None and created["grant"] is None

    poll = asyncio.create_task(
        client.get(f"/v1/requests/{created['id']}?wait=30", headers=auth(token))
    )
    # decide only once the long-poll is registered: otherwise the test would pass on a
    # plain read of an already-approved request and prove nothing about the wake-up
    await until(lambda: created["id"] in runtime.fanout.waiters, what="the long-poll to register")
    assert not poll.done()
    started = time.perf_counter()
    await runtime.gate.decide(created["id"], ALICE, Verdict.APPROVE, "ok", memberships={"finance"})
    answer = await poll
    elapsed = time.perf_counter() - started
    body = await answer.json()
    assert body["status"] == "approved" and body["grant"]
    assert body["approvals"]["received"] == 1
    assert elapsed < 1.0  # woken by the decision, not by the 2 s cross-process re-read


async def test_long_poll_times_out_cleanly_while_pending(
    client: AppClient,
    token: str,
) -> None:
    created = await (
        await submit(client, token, {"tool": "payments.transfer", "arguments": {"amount": 50000}})
    ).json()
    resp = await client.get(f"/v1/requests/{created['id']}?wait=0.3", headers=auth(token))
    assert resp.status == 200
    assert (await resp.json())["status"] == "pending"


async def test_quorum_of_two_distinct_humans(
    client: AppClient,
    token: str,
    runtime: Runtime,
) -> None:
    created = await (
        await submit(client, token, {"tool": "payments.wire", "arguments": {"amount": 1}})
    ).json()
    rid = created["id"]
    first = await runtime.gate.decide(rid, ALICE, Verdict.APPROVE, memberships={"finance"})
    assert first.status.value == "pending"
    with pytest.raises(Exception, match="already voted"):
        await runtime.gate.decide(rid, ALICE, Verdict.APPROVE, memberships={"finance"})
    second = await runtime.gate.decide(rid, ERIN, Verdict.APPROVE, memberships={"finance"})
    assert second.status.value == "approved"
    body = await (await client.get(f"/v1/requests/{rid}", headers=auth(token))).json()
    assert body["approvals"] == {"required": 2, "received": 2}


async def test_non_member_and_requester_cannot_decide(
    client: AppClient,
    token: str,
    runtime: Runtime,
) -> None:
    body = {
        "tool": "payments.transfer",
        "arguments": {"amount": 20000},
        "context": {"requested_by": "alice"},
    }
    rid = (await (await submit(client, token, body)).json())["id"]
    with pytest.raises(Exception, match="not an approver"):
        await runtime.gate.decide(rid, ERIN, Verdict.APPROVE, memberships={"leads"})
    with pytest.raises(Exception, match="someone else"):
        await runtime.gate.decide(rid, ALICE, Verdict.APPROVE, memberships={"finance"})
    assert (await runtime.gate.get(rid)).status.value == "pending"


async def test_simultaneous_decisions_yield_exactly_one_final_state(
    client: AppClient,
    token: str,
    runtime: Runtime,
) -> None:
    rid = (
        await (
            await submit(
                client, token, {"tool": "payments.transfer", "arguments": {"amount": 20000}}
            )
        ).json()
    )["id"]
    results = await asyncio.gather(
        runtime.gate.decide(rid, ALICE, Verdict.APPROVE, memberships={"finance"}),
        runtime.gate.decide(rid, ERIN, Verdict.DENY, "no", memberships={"finance"}),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    final = await runtime.gate.get(rid)
    assert final.status is winners[0].status
    events = [e.event.value for e in await runtime.store.log_entries_for(rid)]
    assert len(events) == 1


async def test_idempotent_replay_and_conflicting_reuse(
    client: AppClient,
    token: str,
) -> None:
    body = {"tool": "payments.transfer", "arguments": {"amount": 30000}}
    first = await submit(client, token, body, **{"Idempotency-Key": "k-1"})
    again = await submit(client, token, body, **{"Idempotency-Key": "k-1"})
    assert first.status == 201 and again.status == 200
    assert (await first.json())["id"] == (await again.json())["id"]
    other = await submit(
        client, token, {**body, "arguments": {"amount": 1}}, **{"Idempotency-Key": "k-1"}
    )
    assert other.status == 409 and other.content_type == PROBLEM


async def test_find_by_idempotency_key_sees_only_the_agents_own_request(
    client: AppClient,
    token: str,
    runtime: Runtime,
) -> None:
    body = {"tool": "payments.transfer", "arguments": {"amount": 30000}}
    created = await (await submit(client, token, body, **{"Idempotency-Key": "k/ä 1"})).json()
    found = await client.get(
        "/v1/requests", params={"idempotency_key": "k/ä 1"}, headers=auth(token)
    )
    assert found.status == 200
    assert [r["id"] for r in (await found.json())["requests"]] == [created["id"]]
    assert (await found.json())["requests"][0]["status"] == "pending"
    none = await client.get("/v1/requests", params={"idempotency_key": "k-2"}, headers=auth(token))
    assert none.status == 200 and (await none.json()) == {"requests": []}
    _, other = await runtime.gate.register_agent("other-agent")
    theirs = await client.get(
        "/v1/requests", params={"idempotency_key": "k/ä 1"}, headers=auth(other)
    )
    assert theirs.status == 200 and (await theirs.json()) == {"requests": []}
    for params in ({}, {"idempotency_key": ""}, {"idempotency_key": "k" * 256}, {"x": "1"}):
        bad = await client.get("/v1/requests", params=params, headers=auth(token))
        assert bad.status == 400 and bad.content_type == PROBLEM, params
    assert (await client.get("/v1/requests", params={"idempotency_key": "k"})).status == 401


async def test_cancel_and_other_agents_requests_are_invisible(
    client: AppClient,
    token: str,
    runtime: Runtime,
) -> None:
    rid = (
        await (
            await submit(
                client, token, {"tool": "payments.transfer", "arguments": {"amount": 20000}}
            )
        ).json()
    )["id"]
    _, other = await runtime.gate.register_agent("other-agent")
    assert (await client.get(f"/v1/requests/{rid}", headers=auth(other))).status == 404
    assert (await client.post(f"/v1/requests/{rid}/cancel", headers=auth(other))).status == 404
    resp = await client.post(f"/v1/requests/{rid}/cancel", headers=auth(token))
    assert resp.status == 200 and (await resp.json())["status"] == "cancelled"
    again = await client.post(f"/v1/requests/{rid}/cancel", headers=auth(token))
    assert again.status == 409


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"arguments": {}}, "tool: required"),
        ({"tool": 7, "arguments": {}}, "tool: must be a string"),
        ({"tool": "a b", "arguments": {}}, "tool: must be"),
        ({"tool": "x.y", "arguments": [1]}, "arguments: must be a JSON object"),
        ({"tool": "x.y"}, "arguments: required"),
        ({"tool": "x.y", "arguments": {}, "extra": 1}, "extra: unknown field"),
        ({"tool": "x.y", "arguments": {}, "callback_url": "ftp://x"}, "callback_url"),
        ([1, 2], None),
    ],
)
async def test_bad_bodies_get_problem_details_listing_the_errors(
    client: AppClient,
    token: str,
    body: Any,
    expected: str | None,
) -> None:
    resp = await submit(client, token, body)
    assert resp.status == 400 and resp.content_type == PROBLEM
    problem = await resp.json()
    assert problem["type"].endswith("/bad-request")
    if expected:
        assert any(expected in e for e in problem["errors"]), problem


async def test_transport_level_bad_input(
    client: AppClient,
    token: str,
) -> None:
    h = {**auth(token), "Content-Type": "application/json"}
    bad_json = await client.post("/v1/requests", data=b"{not json", headers=h)
    assert bad_json.status == 400 and bad_json.content_type == PROBLEM
    nan = await client.post("/v1/requests", data=b'{"tool":"a.b","arguments":{"x":NaN}}', headers=h)
    assert nan.status == 400
    wrong_type = await client.post(
        "/v1/requests", data=b"{}", headers={**auth(token), "Content-Type": "text/plain"}
    )
    assert wrong_type.status == 415 and wrong_type.content_type == PROBLEM
    huge = json.dumps({"tool": "a.b", "arguments": {"x": "y" * (300 * 1024)}}).encode()
    too_big = await client.post("/v1/requests", data=huge, headers=h)
    assert too_big.status == 413 and too_big.content_type == PROBLEM
    deep: Any = {}
    for _ in range(100):
        deep = {"d": deep}
    nested = await submit(client, token, {"tool": "a.b", "arguments": deep})
    assert nested.status == 400
    very_deep = b'{"tool":"a.b","arguments":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert (await client.post("/v1/requests", data=very_deep, headers=h)).status in (400, 413)


async def test_authentication_errors(client: AppClient, token: str, runtime: Runtime) -> None:
    body = {"tool": "crm.read", "arguments": {}}
    assert (await client.post("/v1/requests", json=body)).status == 401
    unknown = await submit(client, "so_not-a-real-token", body)
    assert unknown.status == 401 and unknown.content_type == PROBLEM
    assert (await submit(client, token, body)).status == 201  # the token lookup is now cached
    await runtime.gate.suspend_agent("billing-agent")
    suspended = await submit(client, token, body)
    assert suspended.status == 403  # the suspension drops the cached lookup at once
    await runtime.gate.resume_agent("billing-agent")
    assert (await submit(client, token, body)).status == 201


async def test_suspending_denies_pending_requests_at_once(
    client: AppClient,
    token: str,
    runtime: Runtime,
) -> None:
    rid = (
        await (
            await submit(
                client, token, {"tool": "payments.transfer", "arguments": {"amount": 20000}}
            )
        ).json()
    )["id"]
    denied = await runtime.gate.suspend_agent("billing-agent")
    assert [r.id for r in denied] == [rid]
    assert (await runtime.gate.get(rid)).status.value == "denied"


async def test_wait_out_of_range_and_rate_limit(client: AppClient, token: str) -> None:
    rid = (await (await submit(client, token, {"tool": "crm.read", "arguments": {}})).json())["id"]
    for bad in ("61", "-1", "abc", "nan"):
        resp = await client.get(f"/v1/requests/{rid}?wait={bad}", headers=auth(token))
        assert resp.status == 400, bad
    statuses = []
    for i in range(4):
        resp = await submit(
            client, token, {"tool": "payments.transfer", "arguments": {"amount": i}}
        )
        statuses.append(resp.status)
    assert statuses == [201, 201, 201, 429]
    assert int(resp.headers["Retry-After"]) > 0


async def test_execution_consumes_the_grant_once(
    client: AppClient,
    token: str,
) -> None:
    body = await (await submit(client, token, {"tool": "crm.read", "arguments": {"id": 1}})).json()
    url = f"/v1/requests/{body['id']}/execution"
    tampered = await client.post(
        url,
        json={"grant": body["grant"], "outcome": "started", "arguments": {"id": 2}},
        headers=auth(token),
    )
    assert tampered.status == 403
    ok = await client.post(
        url, json={"grant": body["grant"], "outcome": "started"}, headers=auth(token)
    )
    assert ok.status == 200 and (await ok.json())["outcome"] == "started"
    reused = await client.post(
        url, json={"grant": body["grant"], "outcome": "started"}, headers=auth(token)
    )
    assert reused.status == 409
    done = await client.post(
        url,
        json={"grant": body["grant"], "outcome": "succeeded", "detail": {"rows": 1}},
        headers=auth(token),
    )
    assert done.status == 200 and (await done.json())["outcome"] == "succeeded"


async def test_health_metrics_openapi(client: AppClient) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert "signoff_requests" in metrics
    doc = await (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1") and "/v1/requests" in doc["paths"]


@pytest.mark.postgres
async def test_unreachable_store_answers_503_and_allows_nothing(
    tmp_path: Path, pg_admin_url: str, pg_database: str, aiohttp_client: AiohttpClient
) -> None:
    rt = await build(load_settings(write_home(tmp_path, database_url=pg_database)), adapters=False)
    try:
        _, tok = await rt.gate.register_agent("a1")
        client = await aiohttp_client(rt.app)
        name = pg_database.rsplit("/", 1)[1]
        with psycopg.connect(libpq(pg_admin_url), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
        try:
            resp = await submit(client, tok, {"tool": "crm.read", "arguments": {}})
            assert resp.status == 503 and resp.content_type == PROBLEM
            ready = await client.get("/readyz")
            assert ready.status == 503
            # Neither answer names the database or quotes the driver (the review's finding).
            for text in (await resp.text(), await ready.text()):
                for secret in (name, "postgresql", "127.0.0.1", "5432", "psycopg", "FATAL"):
                    assert secret not in text, (secret, text)
        finally:
            with psycopg.connect(libpq(pg_admin_url), autocommit=True) as conn:
                conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    finally:
        await rt.store.close()


async def test_an_auto_request_spawns_no_background_work(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    """With every default adapter mounted (console, escalation timers, callbacks), an
    auto-tier request without a callback_url leaves no task behind: the hot path only signs,
    appends and answers."""
    rt = await build(load_settings(write_home(tmp_path)))
    await aiohttp_client(rt.app)  # runs the app's start-up and clean-up like `signoff serve`
    try:
        agent, _ = await rt.gate.register_agent("fast-agent")
        request, _ = await rt.gate.submit(agent, Submission(ToolCall("crm.read", {"id": 1})))
        assert request.status.value == "approved"
        assert not rt.fanout._tasks
        with_callback = Submission(
            ToolCall("crm.read", {"id": 2}), callback_url="http://127.0.0.1:9/hook"
        )
        await rt.gate.submit(agent, with_callback)
        assert len(rt.fanout._tasks) == 1  # the signed callback delivery
    finally:
        await asyncio.sleep(0)  # let the delivery start, then stop its retries
        for task in list(rt.fanout._tasks):
            task.cancel()
        await rt.gate.drain()
        await rt.store.close()


async def test_a_wrong_method_answers_405_with_allow(client: AppClient) -> None:
    resp = await client.delete("/v1/requests")
    assert resp.status == 405 and resp.content_type == PROBLEM
    assert "POST" in resp.headers["Allow"]
    resp = await client.put("/v1/log/checkpoint")
    assert resp.status == 405 and "GET" in resp.headers["Allow"]


async def test_proofs_beyond_the_log_are_404_and_bad_numbers_400(
    client: AppClient,
    token: str,
) -> None:
    await submit(client, token, {"tool": "crm.read", "arguments": {}})
    ok = await client.get("/v1/log/proof/inclusion", params={"index": 0, "size": 1})
    assert ok.status == 200 and (await ok.json())["hashes"] == []
    for params in ({"index": 0, "size": 10**6}, {"index": 5, "size": 1}):
        resp = await client.get("/v1/log/proof/inclusion", params=params)
        assert resp.status == 404 and resp.content_type == PROBLEM, params
    for params in ({"from": 1, "to": 10**6}, {"from": 2, "to": 1}):
        resp = await client.get("/v1/log/proof/consistency", params=params)
        assert resp.status == 404, params
    bad: list[dict[str, int | str]] = [
        {"index": -1, "size": 1},
        {"index": 0, "size": 0},
        {"index": "x", "size": 1},
    ]
    for query in bad:
        resp = await client.get("/v1/log/proof/inclusion", params=query)
        assert resp.status == 400, query
    resp = await client.get("/v1/log/proof/consistency", params={"from": 0, "to": 1})
    assert resp.status == 400


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("arguments", {"n": 2**53}, "arguments: numbers must lie within"),
        ("context", {"n": [-(2**60)]}, "context: numbers must lie within"),
        ("context", "", "context: must be a JSON object"),
        ("artifact_digest", "sha256:ab12…", "artifact_digest:"),
        ("callback_url", "ftp://example.com/x", "callback_url:"),
    ],
)
async def test_what_the_openapi_document_forbids_is_a_400_naming_the_field(
    client: AppClient,
    token: str,
    field: str,
    value: Any,
    error: str,
) -> None:
    body = {"tool": "crm.read", "arguments": {}, field: value}
    resp = await submit(client, token, body)
    assert resp.status == 400
    assert any(e.startswith(error) for e in (await resp.json())["errors"])


async def test_null_optional_fields_are_accepted_as_absent(
    client: AppClient,
    token: str,
) -> None:
    body: dict[str, Any] = {
        "tool": "crm.read",
        "arguments": {},
        "context": None,
        "justification": None,
    }
    resp = await submit(client, token, {**body, "artifact_digest": None, "callback_url": None})
    assert resp.status == 201


async def test_a_client_hanging_up_mid_request_is_no_server_error(
    runtime: Runtime, aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    # what aiohttp raises in a handler reading a body whose client went away (a load
    # generator stopping, an agent timing out): answered quietly, not logged as a 500
    async def hung_up(request: web.Request) -> web.Response:
        raise ConnectionResetError("Connection lost")

    app = web.Application(middlewares=[api_middleware])
    app[APP_GATE] = runtime.gate  # the middleware times the request on its metrics
    app.router.add_post("/v1/requests", hung_up)
    client = await aiohttp_client(app)
    response = await client.post("/v1/requests", json={})
    assert response.status == 400
    assert (await response.json())["type"].endswith("bad-request")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
