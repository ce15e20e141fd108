"""Agent authentication when the cached lookup is gone: the requests that arrive together
share one store read, and a shared read never stands in for a refusal or for a lookup
that began after a suspension."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.domain import Agent
from bot.errors import Forbidden, NotAuthorized
from bot.ids import token_hash
from bot.service import Gate
from bot.store import SqlStore
from tests.fakes.clock import FakeClock
from tests.support import make_gate


class SlowAgentReads:
    """The real store, with agent reads counted and their answers held back until
    ``release`` is set (the row is read first: it is as of the read's start)."""

    def __init__(self, inner: SqlStore) -> None:
        self.inner = inner
        self.agent_reads = 0
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def agent_by_token_hash(self, digest: str) -> Agent | None:
        row = await self.inner.agent_by_token_hash(digest)
        self.agent_reads += 1
        await self.release.wait()
        return row


async def _gate(tmp_path: Path) -> tuple[Gate, SlowAgentReads, str]:
    gate = await make_gate(tmp_path, FakeClock())
    _, token = await gate.register_agent("billing-agent")
    inner = gate.store
    assert isinstance(inner, SqlStore)
    slow = SlowAgentReads(inner)
    gate.store = slow
    return gate, slow, token


async def _started(slow: SlowAgentReads, reads: int) -> None:
    async with asyncio.timeout(5):
        while slow.agent_reads < reads:
            await asyncio.sleep(0)
    for _ in range(10):  # let every other task reach its await
        await asyncio.sleep(0)


async def test_requests_that_miss_the_cache_together_share_one_read(tmp_path: Path) -> None:
    gate, slow, token = await _gate(tmp_path)
    try:
        tasks = [asyncio.ensure_future(gate.authenticate(token)) for _ in range(20)]
        await _started(slow, 1)
        slow.release.set()
        agents = await asyncio.gather(*tasks)
        assert {a.id for a in agents} == {"billing-agent"}
        assert slow.agent_reads == 1
        assert gate.auth_cache.lookups == {}  # nothing left behind
    finally:
        await slow.inner.close()


async def test_an_unknown_token_is_refused_to_every_request_that_waited(tmp_path: Path) -> None:
    gate, slow, _ = await _gate(tmp_path)
    try:
        tasks = [asyncio.ensure_future(gate.authenticate("so_not-a-token")) for _ in range(5)]
        await _started(slow, 1)
        slow.release.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(o, NotAuthorized) for o in outcomes)
        # the shared read found nobody: each waiter looked again for itself
        assert slow.agent_reads == 5
    finally:
        await slow.inner.close()


async def test_a_lookup_begun_after_a_suspension_does_not_take_an_earlier_read(
    tmp_path: Path,
) -> None:
    gate, slow, token = await _gate(tmp_path)
    try:
        first = asyncio.ensure_future(gate.authenticate(token))
        await _started(slow, 1)
        await gate.suspend_agent("billing-agent")  # committed while the read is held
        second = asyncio.ensure_future(gate.authenticate(token))
        await _started(slow, 1)
        slow.release.set()
        assert (await first).id == "billing-agent"  # its read began before the suspension
        with pytest.raises(Forbidden):
            await second
        assert slow.agent_reads == 2  # the second read for itself
        assert gate.auth_cache.get(token_hash(token)) is None  # the stale row was not kept
    finally:
        await slow.inner.close()
