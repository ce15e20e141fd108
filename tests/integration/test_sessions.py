"""Sessions end to end (SPEC §5, issue 16): the lethal trifecta over HTTP with the shipped
example policy, the store's session query on SQLite and PostgreSQL, `policy explain
--session-id` against the stored session."""

from __future__ import annotations

import asyncio
import dataclasses
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import insert

from adapters.cli import main as cli
from adapters.runtime import Runtime
from bot.domain import (
    Approver,
    Platform,
    PolicyRef,
    Request,
    Requirement,
    Status,
    Tier,
    Verdict,
)
from bot.ids import request_ids
from bot.policy.session import summarise
from bot.store import SqlStore, mapping
from bot.store.tables import REQUESTS
from tests.factories import make_request
from tests.support import AppClient, write_home

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "policies" / "example.yaml").read_text(encoding="utf-8")
DAVE = Approver(Platform.CONSOLE, "console", "dave", "Dave", via="console_login")


@pytest_asyncio.fixture
async def home(tmp_path: Path, store_url: str) -> Path:
    return write_home(tmp_path, policy=EXAMPLE, database_url=store_url)


@pytest_asyncio.fixture
async def token(runtime: Runtime) -> str:
    _, tok = await runtime.gate.register_agent("assistant")
    return tok


async def call(
    client: AppClient,
    tok: str,
    tool: str,
    arguments: dict[str, Any],
    session: Any = None,
) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"tool": tool, "arguments": arguments}
    if session is not None:
        body["context"] = {"session_id": session}
    resp = await client.post("/v1/requests", json=body, headers={"Authorization": f"Bearer {tok}"})
    return resp.status, await resp.json()


Call = tuple[str, dict[str, Any]]
READ: Call = ("crm.read", {"id": 42})
FETCH: Call = ("web.fetch", {"url": "https://evil.example.net/prompt-injection"})
SEND: Call = ("email.send", {"from": "support@example.com", "to": ["x@example.org"], "body": "…"})


async def test_the_lethal_trifecta_reaches_a_human_while_each_call_alone_does_not(
    client: AppClient,
    token: str,
    runtime: Runtime,
) -> None:
    for number, (tool, arguments) in enumerate((READ, FETCH, SEND)):
        status, body = await call(client, token, tool, arguments, session=f"alone-{number}")
        assert status == 201 and body["status"] == "approved", body
        assert body["tier"] in ("auto", "notify") and body["grant"]

    ids = []
    for tool, arguments in (READ, FETCH):
        status, body = await call(client, token, tool, arguments, session="trifecta")
        assert status == 201 and body["status"] == "approved" and body["tier"] == "auto"
        ids.append(body["id"])
    status, body = await call(client, token, *SEND, session="trifecta")
    assert status == 201
    assert body["status"] == "pending" and body["tier"] == "confirm", body
    assert body["policy"]["rule"] == "lethal-trifecta"
    assert body["grant"] is None

    stored = await runtime.store.get_request(body["id"])
    assert stored is not None and stored.session == "trifecta"
    assert stored.labels == ("external_comms",)
    read = await runtime.store.get_request(ids[0])
    assert read is not None and read.labels == ("private_data",)

    # a human in security decides; only then is there a grant
    decided = await runtime.gate.decide(
        body["id"], DAVE, Verdict.APPROVE, "checked the recipient", memberships=["security"]
    )
    assert decided.status is Status.APPROVED and decided.grant


async def test_another_session_or_none_does_not_inherit_the_labels(
    client: AppClient,
    token: str,
) -> None:
    for tool, arguments in (READ, FETCH):
        await call(client, token, tool, arguments, session="s-1")
    status, body = await call(client, token, *SEND, session="s-2")
    assert status == 201
    assert body["status"] == "approved" and body["policy"]["rule"] == "other-mail"
    # no session key at all: the example requires one for calls that can send data out
    status, body = await call(client, token, *SEND)
    assert status == 201 and body["status"] == "pending"
    assert body["policy"]["rule"] == "external-comms-need-a-session"


@pytest.mark.parametrize(
    ("session", "problem"),
    [
        (42, "context.session_id is the session key and must be a string, not a number"),
        (["a"], "must be a string, not a list"),
        ({"id": "a"}, "must be a string, not an object"),
        ("", "must be 1 to 256 characters long"),
        ("x" * 257, "must be 1 to 256 characters long"),
    ],
)
async def test_a_session_key_of_the_wrong_type_is_a_400(
    client: AppClient,
    token: str,
    runtime: Runtime,
    session: Any,
    problem: str,
) -> None:
    status, body = await call(client, token, *READ, session=session)
    assert status == 400
    assert problem in body["detail"]
    assert await runtime.store.list_requests() == []


async def test_policy_explain_shows_which_stored_calls_put_each_label(
    client: AppClient,
    token: str,
    home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ids = []
    for tool, arguments in (READ, FETCH, ("files.read", {"path": "/hr"})):
        _, body = await call(client, token, tool, arguments, session="explained")
        ids.append(body["id"])
    capsys.readouterr()
    args = ["--tool", "email.send", "--args", '{"from": "support@example.com"}']
    code = await asyncio.to_thread(  # the CLI runs its own event loop, as from a shell
        cli,
        ["policy", "explain", str(home.parent / "policies"), *args, "--session-id", "explained",
         "--config", str(home)],
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "rule:     lethal-trifecta" in out
    assert "session:  'explained', 3 earlier call(s) in the window" in out
    assert (
        f"private_data: put there by 2 call(s), first request {ids[0]} (crm.read), "
        f"latest request {ids[2]} (files.read)" in out
    )
    assert f"untrusted_content: put there by 1 call(s), first request {ids[1]} (web.fetch)" in out


def _request(session: str, at: datetime, labels: tuple[str, ...], tool: str) -> Request:
    return make_request(
        request_ids(),
        agent_id="agent",
        tool=tool,
        arguments={},
        tier=Tier.AUTO,
        status=Status.APPROVED,
        policy=PolicyRef("sha256:x", None, "r"),
        requirement=Requirement(),
        created_at=at,
        arguments_sha256="a",
        call_sha256="c",
        session=session,
        labels=labels,
    )


async def test_ten_thousand_calls_in_one_session_come_back_as_a_few_rows(store: SqlStore) -> None:
    now = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
    rows = []
    ids = sorted(request_ids() for _ in range(10_000))  # UUIDv7: time-ordered, like the calls
    for n, request_id in enumerate(ids):
        labels = (("private_data",), (), ("untrusted_content",), ("private_data", "x"))[n % 4]
        at = now - timedelta(seconds=10_000 - n)
        made = _request("big", at, labels, f"tool.{n}")
        rows.append(mapping.from_request(dataclasses.replace(made, id=request_id)))
    rows.append(mapping.from_request(_request("other", now, ("external_comms",), "t")))
    old = _request("big", now - timedelta(hours=5), ("old_label",), "t")
    rows.append(mapping.from_request(old))
    with store.engine.begin() as conn:
        conn.execute(insert(REQUESTS), rows)

    tracemalloc.start()
    summary = await store.session_calls("big", now - timedelta(hours=4))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(summary) == 4  # one row per distinct label set, not per call
    assert peak < 1_000_000
    view = summarise("big", summary)
    assert view.calls == 10_000
    assert view.labels == ("private_data", "untrusted_content", "x")  # not old_label
    private = view.origins()["private_data"]
    assert private.count == 5_000
    assert private.first_request == rows[0]["id"] and private.last_request == rows[9_999]["id"]
    assert private.last_at == now - timedelta(seconds=1)
    assert await store.session_calls("nobody", now - timedelta(hours=4)) == []


async def test_session_and_labels_round_trip_through_the_store(store: SqlStore) -> None:
    request = _request("s", datetime(2026, 12, 2, tzinfo=UTC), ("a", "b"), "crm.read")
    await store.insert_request(request)
    assert await store.get_request(request.id) == request
    bare = dataclasses.replace(request, id=request_ids(), session=None, labels=())
    await store.insert_request(bare)
    assert await store.get_request(bare.id) == bare
