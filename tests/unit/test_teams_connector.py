"""Connector retries: which statuses are retried, back-off, Retry-After, and giving up as
``ChannelError``. The SDK client factory is replaced by a fake (no sockets, no sleeping)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from microsoft_agents.activity import Activity, ResourceResponse
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from adapters.teams.connector import Connector, retry_after
from bot.errors import ChannelError


def http_error(status: int, retry: str | None = None) -> aiohttp.ClientResponseError:
    headers = CIMultiDict({"Retry-After": retry} if retry is not None else {})
    info = aiohttp.RequestInfo(URL("http://connector/"), "POST", CIMultiDictProxy(CIMultiDict()))
    return aiohttp.ClientResponseError(info, (), status=status, headers=headers)


class FakeConversations:
    def __init__(self, outcomes: list[Any]) -> None:
        self.outcomes = outcomes
        self.calls: list[tuple[str, ...]] = []

    async def _next(self, *call: str) -> ResourceResponse:
        self.calls.append(call)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return ResourceResponse() if outcome is None else ResourceResponse(id=outcome)

    async def send_to_conversation(self, conversation_id: str, body: Activity) -> Any:
        return await self._next("send", conversation_id)

    async def update_activity(self, conversation_id: str, activity_id: str, body: Activity) -> Any:
        assert body.id == activity_id
        return await self._next("update", conversation_id, activity_id)

    async def reply_to_activity(
        self, conversation_id: str, activity_id: str, body: Activity
    ) -> Any:
        return await self._next("reply", conversation_id, activity_id)


class FakeClient:
    def __init__(self, conversations: FakeConversations) -> None:
        self.conversations = conversations
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class FakeFactory:
    def __init__(self, outcomes: list[Any]) -> None:
        self.conversations = FakeConversations(outcomes)
        self.clients: list[FakeClient] = []
        self.requests: list[dict[str, Any]] = []

    async def create_connector_client(
        self,
        context: Any,
        identity: Any,
        service_url: str,
        audience: str,
        scopes: Any = None,
        use_anonymous: bool = False,
    ) -> FakeClient:
        self.requests.append(
            {
                "service_url": service_url,
                "audience": audience,
                "claims": dict(identity.claims),
                "anonymous": use_anonymous,
            }
        )
        client = FakeClient(self.conversations)
        self.clients.append(client)
        return client


def connector(outcomes: list[Any], **kw: Any) -> tuple[Connector, FakeFactory, list[float]]:
    factory = FakeFactory(outcomes)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    # FakeFactory answers create_connector_client as the SDK's abstract factory does
    conn = Connector(factory, "app-1", sleep=sleep, base_delay=1.0, **kw)  # type: ignore[arg-type]
    return conn, factory, slept


def message() -> Activity:
    return Activity(type="message", text="hi")


@pytest.mark.parametrize("status", [429, 412, 500, 502, 503, 504])
async def test_retryable_statuses_are_retried_then_succeed(status: int) -> None:
    conn, factory, slept = connector([http_error(status), "act-1"])
    assert await conn.send("https://smba/", "19:c", message()) == "act-1"
    assert len(factory.conversations.calls) == 2 and len(slept) == 1
    assert 0.5 <= slept[0] <= 1.0  # jittered first back-off step
    assert all(c.closed for c in factory.clients)


async def test_retry_after_is_honoured_and_capped() -> None:
    conn, _, slept = connector(
        [http_error(429, "3"), http_error(429, "9999"), "act-1"], max_delay=20.0
    )
    await conn.send("https://smba/", "19:c", message())
    assert slept == [3.0, 20.0]


async def test_backoff_grows_exponentially() -> None:
    conn, _, slept = connector([http_error(502)] * 3 + ["a"])
    await conn.send("https://smba/", "19:c", message())
    assert [0.5 <= s <= 1.0 for s in slept[:1]] == [True]
    assert 1.0 <= slept[1] <= 2.0 and 2.0 <= slept[2] <= 4.0


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_other_statuses_fail_at_once(status: int) -> None:
    conn, factory, slept = connector([http_error(status), "never"])
    with pytest.raises(ChannelError, match=f"HTTP {status}"):
        await conn.update("https://smba/", "19:c", "act-1", message())
    assert slept == [] and len(factory.conversations.calls) == 1


async def test_gives_up_after_the_last_attempt() -> None:
    conn, factory, slept = connector([http_error(504)] * 3, attempts=3)
    with pytest.raises(ChannelError, match="HTTP 504"):
        await conn.reply("https://smba/", "19:c", "act-1", message())
    assert len(factory.conversations.calls) == 3 and len(slept) == 2


async def test_connection_errors_are_retried() -> None:
    conn, _, slept = connector([aiohttp.ClientConnectionError("refused"), TimeoutError(), "a"])
    assert await conn.send("https://smba/", "19:c", message()) == "a"
    assert len(slept) == 2


async def test_a_post_without_an_id_is_an_error() -> None:
    conn, _, _ = connector([None])
    with pytest.raises(ChannelError, match="activity id"):
        await conn.send("https://smba/", "19:c", message())


async def test_calls_go_out_as_the_app_unless_anonymous() -> None:
    conn, factory, _ = connector(["a"])
    await conn.send("https://smba/x/", "19:c", message())
    (req,) = factory.requests
    assert req["service_url"] == "https://smba/x/" and req["anonymous"] is False
    assert req["audience"] == "https://api.botframework.com"
    assert req["claims"] == {"aud": "app-1", "appid": "app-1"}
    anon, factory2, _ = connector(["a"], anonymous=True)
    await anon.send("https://smba/x/", "19:c", message())
    assert factory2.requests[0]["anonymous"] is True and factory2.requests[0]["claims"] == {}


def test_retry_after_parses_seconds_and_dates() -> None:
    now = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    assert retry_after({"Retry-After": "7"}) == 7.0
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after({"Retry-After": later}, now) == 30.0
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None
