"""Every leader job runs under one leadership (``adapters.main._together``).

Each ``store.lead`` bids for the one leader lock (a ``flock`` on SQLite, an advisory lock on
PostgreSQL); a second bid from the same process waits on the first forever, so a second
leader job used to never run. The composition root now runs them all under one bid."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from adapters.main import _together


async def test_jobs_run_side_by_side_under_one_job() -> None:
    started: list[str] = []
    both = asyncio.Event()

    def job(name: str) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            started.append(name)
            if len(started) == 2:
                both.set()
            await both.wait()

        return run

    await asyncio.wait_for(_together([job("a"), job("b")])(), timeout=5)
    assert sorted(started) == ["a", "b"]


async def test_one_job_failing_cancels_the_others_and_the_failure_is_raised() -> None:
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def broken() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("boom")

    with pytest.raises(ExceptionGroup) as raised:
        await asyncio.wait_for(_together([forever, broken])(), timeout=5)
    assert raised.group_contains(RuntimeError, match="boom")
    assert cancelled.is_set()


def test_a_single_job_is_run_as_it_is() -> None:
    async def only() -> None:
        return None

    assert _together([only]) is only
