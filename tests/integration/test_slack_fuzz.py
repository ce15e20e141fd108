"""Property-based fuzzing of Slack's inbound edge (``POST /slack/events``): correctly signed
bodies that are anything but what Slack sends — valid interaction payloads with any field
replaced by any JSON value, arbitrary JSON, arbitrary form bodies — are answered 2xx or a
clear 4xx, never a 500, and nothing logs an error or a traceback (the work queued after the
ack included). Before ``adapters.slack.inbound`` slack-bolt answered many of them 500."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapters.main import build
from adapters.runtime import Runtime
from adapters.slack import SlackAdapter, mount
from adapters.slack.cards import (
    ACTION_APPROVE,
    ACTION_CONSOLE,
    ACTION_DENY,
    ACTION_REVIEW,
    ACTION_VIEW_ARGS,
)
from adapters.slack.modals import VIEW_DENY, VIEW_REVIEW
from bench.fakes.slack_api import FakeSlack
from bench.fakes.slack_payloads import block_actions, reason_values, sign, view_submission
from bot.settings import load_settings
from tests.fuzzing import paths, replaced
from tests.support import write_home

SECRET = "fuzz-signing-secret"
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def templates() -> list[dict[str, Any]]:
    """Real payloads of every kind signoff listens to."""
    rid = "01a00000-0000-7000-8000-000000000000"
    return [
        block_actions(action, rid, user="U0ALICE")
        for action in (ACTION_APPROVE, ACTION_DENY, ACTION_VIEW_ARGS, ACTION_REVIEW, ACTION_CONSOLE)
    ] + [
        view_submission(VIEW_DENY, f"{rid}|C0FINANCE|1.2", reason_values("no"), user="U0ALICE"),
        view_submission(VIEW_REVIEW, rid, {}, user="U0ALICE"),
        {
            "type": "event_callback",
            "team_id": "T0TEAM",
            "event": {"type": "app_mention", "user": "U0ALICE"},
        },
        {"type": "url_verification", "challenge": "abc", "token": "t"},
    ]


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A real payload with one to three fields (at any depth) replaced by any JSON value."""
    payload: Any = draw(st.sampled_from(templates()))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(paths(payload))))
        payload = replaced(payload, path, draw(JSON))
    return payload  # type: ignore[no-any-return]


def as_form(payload: Any) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


BODIES = st.one_of(
    mutated().map(as_form),
    mutated().map(lambda p: json.dumps(p).encode()),
    JSON.map(as_form),
    JSON.map(lambda p: json.dumps(p).encode()),
    st.dictionaries(
        st.sampled_from(["payload", "command", "ssl_check", "text"]), st.text(max_size=20)
    ).map(lambda d: urlencode(d).encode()),
    st.binary(max_size=40),
)


class Edge:
    """signoff's app with the Slack adapter, on a loop this synchronous test drives."""

    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.fake = FakeSlack()
        self.loop.run_until_complete(self.fake.start())
        extra = (
            f"slack:\n  bot_token: {self.fake.token}\n  signing_secret: {SECRET}\n"
            f"  api_base_url: {self.fake.base_url}\n"
        )
        self.runtime: Runtime = self.loop.run_until_complete(
            build(load_settings(write_home(tmp_path, extra=extra)), adapters=False, mounts=[mount])
        )
        self.adapter = self.runtime.part(SlackAdapter)
        self.client = TestClient(TestServer(self.runtime.app), loop=self.loop)
        self.loop.run_until_complete(self.client.start_server())

    def post(self, body: bytes, content_type: str) -> int:
        async def run() -> int:
            headers = sign(SECRET, body)
            headers["Content-Type"] = content_type
            resp = await self.client.post("/slack/events", data=body, headers=headers)
            await resp.read()
            await asyncio.wait_for(self.adapter.drain(), 10)
            return resp.status

        return self.loop.run_until_complete(run())

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.run_until_complete(self.runtime.store.close())
        self.loop.run_until_complete(self.fake.close())
        self.loop.close()


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    made = Edge(tmp_path)
    try:
        yield made
    finally:
        made.close()


@FUZZ
@example(body=b"\x80", content_type="application/json")  # slack_sdk decoded it and raised
@example(body=b"payload=null", content_type="application/x-www-form-urlencoded")
@example(body=as_form({"type": "block_actions", "actions": [None]}), content_type="text/plain")
@example(body=as_form({"type": "view_submission", "view": {}}), content_type="text/plain")
@example(
    body=as_form({"type": None, "team_id": "T0TEAM", "event": None}), content_type="text/plain"
)
@example(
    body=json.dumps({"type": "event_callback", "event": None}).encode(),
    content_type="application/json",
)
@example(  # several response_urls: slack-bolt logs through a logger it has not set yet
    body=as_form(
        {
            "type": "view_submission",
            "user": {"id": "U0A"},
            "view": {"type": "modal"},
            "response_urls": [{"response_url": "https://a"}, {"response_url": "https://b"}],
        }
    ),
    content_type="text/plain",
)
@example(
    body=as_form({"type": "view_submission", "user": {"id": "U0A"}, "response_urls": [None]}),
    content_type="text/plain",
)
@example(
    body=as_form({"type": "view_submission", "user": {"id": "U0A"}, "response_urls": None}),
    content_type="text/plain",
)
@example(
    body=as_form(
        {"type": "block_actions", "user": "U0A", "actions": [{"action_id": "signoff_approve"}]}
    ),
    content_type="text/plain",
)
@given(
    body=BODIES,
    content_type=st.sampled_from(["application/x-www-form-urlencoded", "application/json"]),
)
def test_signed_malformed_payloads_get_a_4xx_never_a_500(
    edge: Edge, caplog: pytest.LogCaptureFixture, body: bytes, content_type: str
) -> None:
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        status = edge.post(body, content_type)
    assert status < 500, (status, body)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [(r.name, r.getMessage()) for r in errors]
