"""The published checkpoint file (``bot.published``): a note read back exactly as this
process wrote or verified it skips the signature check; any other text is checked in full."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import bot.published
from bot.evidence.checkpoint import sign_checkpoint, verify_checkpoint
from bot.evidence.keys import KeyRing
from bot.published import PublishedFile, RollbackDetected

ORIGIN = "signoff.example/log"
ROOT = hashlib.sha256(b"root").digest()


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing.create(tmp_path / "keys")


def count_verifies(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []

    def counting(text: str, *args: object, **kwargs: object) -> tuple[int, bytes]:
        seen.append(text)
        return verify_checkpoint(text, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bot.published, "verify_checkpoint", counting)
    return seen


def test_own_note_read_back_without_a_second_verify(
    ring: KeyRing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified = count_verifies(monkeypatch)
    file = PublishedFile(tmp_path / "latest", ring, ORIGIN)
    note = sign_checkpoint(ORIGIN, 7, ROOT, ring)
    file.write(note)
    assert file.read() == (7, ROOT, note)
    assert file.read() == (7, ROOT, note)
    assert verified == []


def test_a_replaced_file_is_verified_again(
    ring: KeyRing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified = count_verifies(monkeypatch)
    file = PublishedFile(tmp_path / "latest", ring, ORIGIN)
    file.write(sign_checkpoint(ORIGIN, 7, ROOT, ring))
    other = sign_checkpoint(ORIGIN, 9, hashlib.sha256(b"fork").digest(), ring)
    file.path.write_text(other)
    assert file.read() == (9, hashlib.sha256(b"fork").digest(), other)
    assert verified == [other]
    assert file.read() is not None and verified == [other]  # now trusted as read


def test_a_tampered_file_is_refused_after_a_trusted_one(ring: KeyRing, tmp_path: Path) -> None:
    file = PublishedFile(tmp_path / "latest", ring, ORIGIN)
    note = sign_checkpoint(ORIGIN, 7, ROOT, ring)
    file.write(note)
    assert file.read() is not None
    file.path.write_text(note.replace("\n7\n", "\n8\n"))
    with pytest.raises(RollbackDetected, match="does not verify"):
        file.read()
