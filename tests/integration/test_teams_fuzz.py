"""Property-based fuzzing of Teams' inbound edge (``POST /api/messages``): correctly
authenticated bodies (a valid Bot Framework channel token from the fake) that are anything
but what Teams sends — real activities with any field replaced by any JSON value (card
actions' ``value`` included), huge strings, arbitrary JSON, non-JSON bytes — are answered
2xx or a clear 4xx, never a 500; nothing logs an error or a traceback; and none of them
decides anything (the clicker of the real shapes is not an approver, so any vote is a bug)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpClient

from tests.fakes.teams_env import MALLORY, TeamsEnv, teams_env
from tests.fuzzing import paths, replaced
from tests.support import AppClient

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
HUGE = "x" * 100_000  # two fit in a body (server.max_body_bytes: 256 KiB); three get a 413

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.just(HUGE),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


class Edge:
    """signoff's app with the Teams adapter and one pending request (its card posted), on a
    loop this synchronous test drives."""

    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.stack = contextlib.AsyncExitStack()
        self.clients: list[AppClient] = []
        self.env: TeamsEnv = self.loop.run_until_complete(
            self.stack.enter_async_context(teams_env(tmp_path, cast(AiohttpClient, self._client)))
        )
        created = self.loop.run_until_complete(
            self.env.submit("payments.transfer", {"amount": 25000, "to": "acct-123"})
        )
        self.request_id: str = created["id"]
        self.loop.run_until_complete(self.env.card_message(self.request_id))

    async def _client(self, app: web.Application) -> AppClient:
        client: AppClient = TestClient(TestServer(app))
        await client.start_server()
        self.clients.append(client)
        return client

    def templates(self) -> list[dict[str, Any]]:
        """Real activities of every kind signoff answers."""
        env, rid = self.env, self.request_id
        invokes = [
            env.activity("approve", rid, MALLORY),
            env.activity("deny", rid, MALLORY, reason="no"),
            env.activity(
                "approve", rid, MALLORY, data={"edited": '{"amount": 1}', "reviewed": "x"}
            ),
            env.activity("refresh", rid, MALLORY),
            env.activity("review", rid, MALLORY),
        ]
        base = {k: v for k, v in invokes[0].items() if k not in ("name", "value")}
        return [
            *invokes,
            {**base, "type": "message", "text": "hello"},
            {**base, "type": "installationUpdate", "action": "add"},
            {**base, "type": "conversationUpdate", "membersAdded": [{"id": "29:x"}]},
        ]

    def post(self, body: bytes) -> int:
        async def run() -> int:
            headers = {
                "Authorization": f"Bearer {self.env.fake.inbound_token()}",
                "Content-Type": "application/json",
            }
            resp = await self.env.client.post(
                "/api/messages", data=io.BytesIO(body), headers=headers
            )
            await resp.read()
            await asyncio.wait_for(self.env.runtime.gate.drain(), 10)
            return resp.status

        return self.loop.run_until_complete(run())

    def decided_nothing(self) -> bool:
        async def check() -> bool:
            votes = await self.env.runtime.store.votes(self.request_id)
            current = await self.env.runtime.gate.get(self.request_id)
            return not votes and current.status.value == "pending"

        return self.loop.run_until_complete(check())

    def close(self) -> None:
        self.loop.run_until_complete(self.stack.aclose())
        for client in self.clients:
            self.loop.run_until_complete(client.close())
        self.loop.close()


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    made = Edge(tmp_path_factory.mktemp("teams-fuzz"))
    try:
        yield made
    finally:
        made.close()


@st.composite
def mutated(draw: st.DrawFn, templates: list[dict[str, Any]]) -> Any:
    """A real activity with one to three fields (at any depth) replaced by any JSON value."""
    activity: Any = draw(st.sampled_from(templates))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(paths(activity))))
        activity = replaced(activity, path, draw(JSON))
    return activity


@st.composite
def card_data(draw: st.DrawFn, templates: list[dict[str, Any]], request_id: str) -> bytes:
    """A well-formed card action (any verb) whose ``data`` holds odd values under the keys
    ``ApprovalBot`` reads: past the shape check, into the handler."""
    data = draw(
        st.dictionaries(
            st.sampled_from(["request_id", "reason", "edited", "reviewed", "other"]),
            JSON | st.just(request_id) | st.just('{"amount": 1}'),
            max_size=5,
        )
    )
    verb = draw(st.sampled_from(["approve", "deny", "refresh", "review"]) | st.text(max_size=8))
    activity = replaced(templates[0], ("value", "action"), {"type": "Action.Execute"})
    activity["value"]["action"].update(verb=verb, data=data)
    return json.dumps(activity).encode()


def _edited(edge: Edge, template: int, path: tuple[Any, ...], new: Any) -> bytes:
    return json.dumps(replaced(edge.templates()[template], path, new)).encode()


def bodies(templates: list[dict[str, Any]], request_id: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        mutated(templates).map(lambda a: json.dumps(a).encode()),
        card_data(templates, request_id),
        JSON.map(lambda a: json.dumps(a).encode()),
        st.binary(max_size=40),
    )


@pytest.mark.filterwarnings("ignore:Generating overly large repr")  # the huge strings
def test_signed_malformed_activities_get_a_4xx_never_a_500(
    edge: Edge, caplog: pytest.LogCaptureFixture
) -> None:
    @FUZZ
    @example(body=b"\x80")
    @example(body=b"[]")
    @example(body=_edited(edge, 0, ("value",), None))  # the SDK's refusal failed to encode: 500
    @example(body=_edited(edge, 0, ("recipient",), None))  # the reply failed: 501, traceback
    @example(body=_edited(edge, 0, ("name",), None))  # an unhandled invoke: 501
    @example(body=_edited(edge, 5, ("type",), None))  # the SDK logged a traceback
    @example(body=_edited(edge, 6, ("channelId",), ""))  # ChannelId raised a TypeError: 500
    @example(body=_edited(edge, 7, ("membersAdded", 0, "id"), {}))
    @given(body=bodies(edge.templates(), edge.request_id))
    def check(body: bytes) -> None:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            status = edge.post(body)
        assert status < 500, (status, body[:300])
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
        assert not errors, [(r.name, r.getMessage()) for r in errors]
        assert edge.decided_nothing(), body[:300]

    check()
