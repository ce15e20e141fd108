"""``bot.checkpoints``: the periodic checkpoint on a real store, with a published file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.checkpoints import Checkpointer
from bot.clock import SystemClock
from bot.domain import Event
from bot.evidence.checkpoint import parse_checkpoint
from bot.evidence.keys import KeyRing
from bot.store import SqlStore
from tests.factories import envelope
from tests.factories import numbered_request as make_request
from tests.support import until

ORIGIN = "signoff.example/log"


async def test_an_idle_log_is_not_checked_again_each_interval(
    store: SqlStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    published = tmp_path / "checkpoints" / "latest"
    checkpoints = Checkpointer(
        store,
        KeyRing.create(tmp_path / "keys"),
        SystemClock(),
        origin=ORIGIN,
        publish_file=published,
    )
    sizes: list[int] = []
    real_log_size = store.log_size
    looked_up: list[int] = []
    real_latest = store.latest_checkpoint

    async def log_size() -> int:
        sizes.append(await real_log_size())
        return sizes[-1]

    async def latest_checkpoint():  # type: ignore[no-untyped-def]
        looked_up.append(1)
        return await real_latest()

    monkeypatch.setattr(store, "log_size", log_size)
    monkeypatch.setattr(store, "latest_checkpoint", latest_checkpoint)
    await store.insert_request(make_request(1), envelope(1), Event.AUTO_ALLOWED)
    task = asyncio.create_task(checkpoints.run(0.01))
    try:
        await until(lambda: published.exists(), what="the first checkpoint published")
        assert parse_checkpoint(published.read_text()).size == 1
        issued = len(looked_up)
        ticks = len(sizes)
        await until(lambda: len(sizes) >= ticks + 5, what="five idle intervals")
        assert len(looked_up) == issued  # nothing signed, published or proved while idle
        assert len(await store.recent_checkpoints(10)) == 1

        await store.insert_request(make_request(2), envelope(2), Event.AUTO_ALLOWED)
        await until(
            lambda: parse_checkpoint(published.read_text()).size == 2,
            what="the grown log published",
        )
    finally:
        task.cancel()
