"""The per-agent pending cap (SPEC §6) is one step with the insert, for every writer.

The store counts an agent's pending requests in the insert's own write transaction, under the
log's append lock, so submissions sent at once through one process (sharing group commits,
where a row queued by an earlier write of the group is not in the table yet) or through two
replicas of one database can neither slip past the cap nor be refused under it; other
agents' and non-pending inserts in the same groups are not affected.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.domain import Agent, Event, Status
from bot.errors import RateLimited
from bot.store import SqlStore
from tests.factories import STORE_T0 as T0
from tests.factories import numbered_request


async def _insert(store: SqlStore, number: int, agent: str, status: Status) -> str:
    request = numbered_request(number, agent_id=agent, status=status)
    if status is Status.PENDING:
        await store.insert_request(request, max_pending=3)
    else:  # an auto-tier call: attested, never capped
        await store.insert_request(request, b'{"n":%d}' % number, Event.AUTO_ALLOWED)
    return agent


async def test_a_burst_through_one_store_stops_at_the_cap(store: SqlStore) -> None:
    for name in ("greedy", "other"):
        await store.add_agent(Agent(name, name * 8, T0))
    writes = [
        _insert(store, n, "greedy" if n % 2 else "other", Status.PENDING) for n in range(1, 41)
    ]
    writes += [_insert(store, n, "greedy", Status.APPROVED) for n in range(41, 51)]
    results = await asyncio.gather(*writes, return_exceptions=True)
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert len(refused) == 34 and all(not isinstance(r, Exception) or r in refused for r in results)
    assert "greedy" in str(refused[0]) and refused[0].retry_after > 0
    for name in ("greedy", "other"):
        pending = await store.list_requests(status=Status.PENDING, agent_id=name)
        assert len(pending) == 3
    assert len(await store.list_requests(status=Status.APPROVED, agent_id="greedy")) == 10
    assert await store.log_size() == 10


@pytest.mark.postgres
async def test_two_replicas_together_stop_at_the_cap(pg_url: str) -> None:
    first, second = await SqlStore.open(pg_url), await SqlStore.open(pg_url)
    try:
        await first.add_agent(Agent("greedy", "g" * 64, T0))
        results = await asyncio.gather(
            *(_insert((first, second)[n % 2], n, "greedy", Status.PENDING) for n in range(30)),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["RateLimited"] * 27 + ["str"] * 3
        assert len(await second.list_requests(status=Status.PENDING, agent_id="greedy")) == 3
    finally:
        await first.close()
        await second.close()
