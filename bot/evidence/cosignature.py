"""Witness cosignatures on checkpoints (c2sp.org/tlog-cosignature, Ed25519 ``cosignature/v1``)
and the signed-note verifier keys that name witnesses (c2sp.org/signed-note).

A cosignature is a note signature line ``— <witness name> base64(key ID || timestamp ||
signature)`` where

* key ID = SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4],
* timestamp = u64 big-endian POSIX seconds,
* signature = Ed25519 over ``cosignature/v1\\ntime <timestamp>\\n`` followed by the whole
  checkpoint body (its lines with their newlines, no signature lines).

A verifier key (vkey) is ``<name>+<hex key ID>+base64(type byte || public key)``; type 0x04
for cosignature/v1 witnesses, 0x01 for ordinary Ed25519 note signers (the log's own key).

Errors: ``EvidenceError`` for malformed keys and lines, missing cosignatures, signatures that
do not verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import nacl.exceptions
import nacl.signing

from bot.errors import EvidenceError

COSIGNATURE_V1 = 0x04
ED25519_NOTE = 0x01
_DASH = "\u2014"
_MAX_TIMESTAMP = 2**63 - 1


class VerifierKey(NamedTuple):
    """A signed-note verifier key: who (``name``), which (``key_id``), what (``public``)."""

    name: str
    key_id: bytes
    kind: int
    public: bytes

    def text(self) -> str:
        blob = base64.b64encode(bytes([self.kind]) + self.public).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{blob}"


def key_id(name: str, kind: int, public: bytes) -> bytes:
    """SHA-256(name || 0x0A || type || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([kind]) + public).digest()[:4]


def verifier_key(name: str, public: bytes, kind: int = COSIGNATURE_V1) -> VerifierKey:
    """The vkey of ``public`` under ``name``. Raises ``EvidenceError`` for a bad name."""
    _check_name(name)
    if len(public) != 32:
        raise EvidenceError("an Ed25519 public key is 32 bytes")
    return VerifierKey(name, key_id(name, kind, public), kind, public)


def parse_verifier_key(text: str, kind: int = COSIGNATURE_V1) -> VerifierKey:
    """Parse ``name+hash+base64`` and check its hash. Raises ``EvidenceError``."""
    parts = text.strip().split("+", 2)  # the base64 key data may contain "+"
    if len(parts) != 3:
        raise EvidenceError(f"verifier key {text[:40]!r} is not name+hash+key")
    name, hash_hex, blob_text = parts
    _check_name(name)
    try:
        given = bytes.fromhex(hash_hex)
        blob = base64.b64decode(blob_text, validate=True)
    except (ValueError, binascii.Error):
        raise EvidenceError(f"verifier key for {name} is not hex+base64") from None
    if len(given) != 4 or len(hash_hex) != 8:
        raise EvidenceError(f"verifier key for {name}: the key hash is not 8 hex digits")
    if len(blob) != 33 or blob[0] != kind:
        raise EvidenceError(
            f"verifier key for {name} is not an Ed25519 key of type 0x{kind:02x} "
            f"({'cosignature/v1' if kind == COSIGNATURE_V1 else 'note signer'})"
        )
    key = verifier_key(name, blob[1:], kind)
    if key.key_id != given:
        raise EvidenceError(f"verifier key for {name}: the key hash does not match the key")
    return key


def cosigned_message(body: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: the header and time lines, then the checkpoint body."""
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise EvidenceError("cosignature timestamp out of range")
    if not body.endswith("\n"):
        raise EvidenceError("checkpoint body must end with a newline")
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def cosign(body: str, name: str, key: nacl.signing.SigningKey, timestamp: int) -> str:
    """One cosignature line (with its newline) over checkpoint ``body`` at ``timestamp``."""
    public = bytes(key.verify_key)
    signature = key.sign(cosigned_message(body, timestamp)).signature
    blob = key_id(name, COSIGNATURE_V1, public) + struct.pack(">Q", timestamp) + signature
    return f"{_DASH} {name} {base64.b64encode(blob).decode('ascii')}\n"


class Cosignature(NamedTuple):
    name: str
    timestamp: int


def note_parts(note: str) -> tuple[str, list[str]]:
    """(body, signature lines without newlines) of a signed note. Raises ``EvidenceError``."""
    body, sep, sigs = note.partition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise EvidenceError("not a signed note (no blank line before the signatures)")
    return body + "\n", sigs[:-1].split("\n")


def verify_cosignatures(
    note: str, witnesses: Sequence[VerifierKey], quorum: int | None = None
) -> list[Cosignature]:
    """The cosignatures on ``note`` by ``witnesses`` that verify, newest first per witness.

    Lines by unknown keys are ignored (signed-note rules); a line that names a known key but
    does not verify is an error. Raises ``EvidenceError`` when fewer than ``quorum``
    (default: all of ``witnesses``) distinct witnesses cosigned."""
    body, lines = note_parts(note)
    by_id = {(w.name, w.key_id): w for w in witnesses}
    found: dict[str, Cosignature] = {}
    for line in lines:
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _DASH:
            raise EvidenceError(f"malformed signature line {line[:60]!r}")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except (ValueError, binascii.Error):
            raise EvidenceError(f"signature by {parts[1]} is not base64") from None
        witness = by_id.get((parts[1], blob[:4]))
        if witness is None:
            continue
        if len(blob) != 4 + 8 + 64:
            raise EvidenceError(f"cosignature by {witness.name} has the wrong length")
        (timestamp,) = struct.unpack(">Q", blob[4:12])
        try:
            nacl.signing.VerifyKey(witness.public).verify(
                cosigned_message(body, timestamp), blob[12:]
            )
        except nacl.exceptions.BadSignatureError:
            raise EvidenceError(f"cosignature by {witness.name} does not verify") from None
        found[witness.name] = Cosignature(witness.name, timestamp)
    needed = len({w.name for w in witnesses}) if quorum is None else quorum
    if len(found) < needed:
        missing = sorted({w.name for w in witnesses} - set(found))
        raise EvidenceError(
            f"checkpoint has {len(found)} valid witness cosignature(s), {needed} required "
            f"(missing: {', '.join(missing) or 'none'})"
        )
    return list(found.values())


def add_signatures(note: str, lines: Iterable[str]) -> str:
    """``note`` with the signature ``lines`` appended (duplicates dropped)."""
    _, existing = note_parts(note)
    extra = [line.rstrip("\n") for line in lines]
    new = [line for line in dict.fromkeys(extra) if line not in existing]
    return note + "".join(line + "\n" for line in new)


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise EvidenceError(f"key name {name!r} must be non-empty, without spaces or '+'")


__all__ = [
    "COSIGNATURE_V1",
    "ED25519_NOTE",
    "Cosignature",
    "VerifierKey",
    "add_signatures",
    "cosign",
    "cosigned_message",
    "key_id",
    "note_parts",
    "parse_verifier_key",
    "verifier_key",
    "verify_cosignatures",
]
