"""Request ids: UUID version 7, time-ordered, unique."""

from __future__ import annotations

import time
import uuid

import pytest

from bot.ids import RequestIds


def test_ids_are_rfc9562_version_7_with_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid.UUID(RequestIds()())
    after = time.time_ns() // 1_000_000
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert before <= value.int >> 80 <= after


def test_ids_from_later_milliseconds_sort_after_earlier_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make = RequestIds()
    clock = iter(range(1_795_000_000_000_000_000, 1_795_000_100_000_000_000, 1_000_000))
    monkeypatch.setattr(time, "time_ns", lambda: next(clock))
    made = [make() for _ in range(50)]
    assert made == sorted(made)  # the index keyed by them only ever grows at its right edge


def test_ids_are_unique_within_one_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    make = RequestIds()
    monkeypatch.setattr(time, "time_ns", lambda: 1_795_000_000_000_000_000)
    made = {make() for _ in range(5_000)}  # more than one 4 KiB draw of randomness
    assert len(made) == 5_000
