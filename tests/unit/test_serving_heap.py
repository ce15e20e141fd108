"""``adapters.serving.settle_heap``: what the server does to the cyclic collector before
it takes requests (startup's objects frozen, the young generation collected less often)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from adapters.serving import YOUNG_THRESHOLD, settle_heap


class Node:
    """Something that can sit in a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def collector() -> Iterator[None]:
    """Leave the collector as the test found it."""
    saved = gc.get_threshold()
    was_enabled = gc.isenabled()
    gc.enable()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)
        if not was_enabled:
            gc.disable()


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.mark.usefixtures("collector")
def test_startup_objects_are_frozen_and_the_young_threshold_raised() -> None:
    _, middle, old = gc.get_threshold()
    built_at_startup = [Node() for _ in range(100)]
    settle_heap()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)
    assert gc.isenabled()
    # frozen: in no generation the collector scans
    startup = {id(n) for n in built_at_startup}
    assert not any(id(o) in startup for o in gc.get_objects())
    made_later = Node()
    assert any(o is made_later for o in gc.get_objects(generation=0))


@pytest.mark.usefixtures("collector")
def test_cycles_made_while_serving_are_still_collected_without_an_explicit_collect() -> None:
    settle_heap()
    garbage = cycle()
    assert garbage() is not None  # reference counting alone cannot free a cycle
    kept: list[list[int]] = []
    for _ in range(YOUNG_THRESHOLD * 2):  # net allocations past the young threshold
        kept.append([0])
        if garbage() is None:
            break
    assert garbage() is None
