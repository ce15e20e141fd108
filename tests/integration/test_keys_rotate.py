"""``signoff keys rotate`` run by several processes at once on one key directory: every
rotation's key stays in the manifest, and the manifest is never torn."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from bot.evidence.keys import KeyRing

ROTATIONS = 5
PROCESSES = 4


def _rotate_many(directory: str) -> list[str]:
    return [KeyRing.load(directory).rotate() for _ in range(ROTATIONS)]


def test_concurrent_rotations_lose_no_key(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    first = KeyRing.create(directory).kid
    context = multiprocessing.get_context("spawn")
    with context.Pool(PROCESSES) as pool:
        made = pool.map(_rotate_many, [str(directory)] * PROCESSES)
    rotated = {kid for kids in made for kid in kids}
    assert len(rotated) == PROCESSES * ROTATIONS
    ring = KeyRing.load(directory)  # parses: the manifest was replaced whole every time
    assert set(ring.kids) == rotated | {first}
    assert ring.kid in rotated
    for kid in ring.kids:  # every listed key's private half is on disk
        assert (directory / f"{kid}.key").exists()
