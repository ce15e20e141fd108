"""C2SP checkpoints in signed notes, cross-checked with tlog-scales."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tlog_scales.signing import PlainEd25519Signer, Vkey
from tlog_scales.tlog import Checkpoint

from bot.errors import EvidenceError
from bot.evidence.checkpoint import parse_checkpoint, sign_checkpoint, verify_checkpoint
from bot.evidence.keys import KeyRing

ORIGIN = "signoff.example/log"
ROOT = hashlib.sha256(b"root").digest()


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing.create(tmp_path / "keys")


def seed(ring: KeyRing) -> bytes:
    return bytes.fromhex((ring.directory / f"{ring.kid}.key").read_text().strip())


def test_format(ring: KeyRing) -> None:
    text = sign_checkpoint(ORIGIN, 42, ROOT, ring)
    body, sig = text.split("\n\n")
    assert body == f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}"
    assert sig.startswith(f"\u2014 {ORIGIN} ") and sig.endswith("\n")
    assert len(base64.b64decode(sig.split(" ")[2])) == 4 + 64


def test_round_trip(ring: KeyRing) -> None:
    text = sign_checkpoint(ORIGIN, 42, ROOT, ring)
    assert verify_checkpoint(text, ring, ORIGIN) == (42, ROOT)
    parsed = parse_checkpoint(text)
    assert (parsed.origin, parsed.size, parsed.root) == (ORIGIN, 42, ROOT)
    assert verify_checkpoint(sign_checkpoint(ORIGIN, 0, ROOT, ring), ring) == (0, ROOT)


def test_ours_verifies_with_tlog_scales(ring: KeyRing) -> None:
    text = sign_checkpoint(ORIGIN, 7, ROOT, ring)
    theirs = Checkpoint.from_text(text)
    assert (theirs.origin, theirs.size, theirs.root_hash) == (ORIGIN, 7, ROOT)
    vkey = Vkey.from_string(ring.note_verifier_key(ORIGIN))
    assert vkey.match(theirs.signatures[0])
    theirs.verify(vkey)  # raises on failure
    assert Vkey(ORIGIN, None, 1, ring.current_public_key()).key_id == vkey.key_id
    assert theirs.serialize() == text


def test_tlog_scales_checkpoint_verifies_with_ours(ring: KeyRing) -> None:
    signer = PlainEd25519Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(seed(ring)))
    text = Checkpoint.make_signed(ORIGIN, 9, ROOT, [signer]).serialize()
    assert verify_checkpoint(text, ring, ORIGIN) == (9, ROOT)


def test_verifies_after_rotation(ring: KeyRing) -> None:
    text = sign_checkpoint(ORIGIN, 3, ROOT, ring)
    ring.rotate()
    assert verify_checkpoint(text, ring) == (3, ROOT)


@pytest.mark.parametrize(
    ("old", "new"),
    [("\n42\n", "\n43\n"), (ORIGIN + "\n", "other.example/log\n")],
)
def test_changed_body_fails(ring: KeyRing, old: str, new: str) -> None:
    text = sign_checkpoint(ORIGIN, 42, ROOT, ring).replace(old, new, 1)
    with pytest.raises(EvidenceError):
        verify_checkpoint(text, ring)


def test_changed_root_fails(ring: KeyRing) -> None:
    text = sign_checkpoint(ORIGIN, 42, ROOT, ring)
    other = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    tampered = text.replace(base64.b64encode(ROOT).decode(), other)
    with pytest.raises(EvidenceError, match="does not verify"):
        verify_checkpoint(tampered, ring)


def test_wrong_origin_and_unknown_key(ring: KeyRing, tmp_path: Path) -> None:
    text = sign_checkpoint(ORIGIN, 42, ROOT, ring)
    with pytest.raises(EvidenceError, match="expected"):
        verify_checkpoint(text, ring, "elsewhere/log")
    other = KeyRing.create(tmp_path / "other")
    with pytest.raises(EvidenceError, match="not signed by any published key"):
        verify_checkpoint(sign_checkpoint(ORIGIN, 42, ROOT, other), ring)


def test_unknown_cosignature_is_ignored(ring: KeyRing, tmp_path: Path) -> None:
    other = KeyRing.create(tmp_path / "other")
    mine = sign_checkpoint(ORIGIN, 5, ROOT, ring)
    theirs = sign_checkpoint(ORIGIN, 5, ROOT, other)
    both = theirs + mine.split("\n\n")[1]
    assert verify_checkpoint(both, ring) == (5, ROOT)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "origin\n1\n",
        f"origin\n1\n{base64.b64encode(ROOT).decode()}\n",  # no signatures
        f"origin\n01\n{base64.b64encode(ROOT).decode()}\n\n\u2014 origin AAAAAAA=\n",
        f"origin\n-1\n{base64.b64encode(ROOT).decode()}\n\n\u2014 origin AAAAAAA=\n",
        "origin\n1\nnot-base64\n\n\u2014 origin AAAAAAA=\n",
        f"origin\n1\n{base64.b64encode(b'short').decode()}\n\n\u2014 origin AAAAAAA=\n",
        f"origin\n1\n{base64.b64encode(ROOT).decode()}\n\n- origin AAAAAAA=\n",
        f"origin\n1\n{base64.b64encode(ROOT).decode()}\n\n\u2014 origin AA==\n",
        f"origin\n1\n{base64.b64encode(ROOT).decode()}\n\n\u2014 origin AAAAAAA=",
        f"or\x01gin\n1\n{base64.b64encode(ROOT).decode()}\n\n\u2014 origin AAAAAAA=\n",
    ],
)
def test_malformed_notes(text: str) -> None:
    with pytest.raises(EvidenceError):
        parse_checkpoint(text)


def test_sign_refuses_bad_origin(ring: KeyRing) -> None:
    with pytest.raises(EvidenceError, match="origin"):
        sign_checkpoint("has space", 1, ROOT, ring)
    with pytest.raises(EvidenceError, match="32-byte"):
        sign_checkpoint(ORIGIN, 1, b"x", ring)
