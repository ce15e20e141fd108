"""Checkpoints: C2SP tlog-checkpoint bodies in C2SP signed notes, with Ed25519 signatures.

Owns the text ``GET /v1/log/checkpoint`` serves (c2sp.org/tlog-checkpoint,
c2sp.org/signed-note)::

    <origin>\\n<tree size, decimal>\\n<base64 root hash>\\n
    \\n
    — <key name> <base64(4-byte key hash || 64-byte Ed25519 signature)>\\n

The signature covers the note text (the three body lines with their newlines). The key name
is the origin (e.g. ``signoff.local/log``); the key hash is SHA-256(name || 0x0A || 0x01 ||
public key)[:4] (``bot.evidence.keys.note_key_hash``).

Errors: ``EvidenceError`` for malformed notes and signatures that do not verify.
"""

from __future__ import annotations

import base64
import binascii
from typing import NamedTuple

from bot.errors import EvidenceError
from bot.evidence.keys import KeyRing, PublicKeys, note_key_hash

DEFAULT_ORIGIN = "signoff.local/log"
_DASH = "\u2014"  # em dash, U+2014
_MAX_NOTE = 1 << 16


class NoteSignature(NamedTuple):
    name: str
    key_hash: bytes
    signature: bytes


class ParsedCheckpoint(NamedTuple):
    origin: str
    size: int
    root: bytes
    signatures: tuple[NoteSignature, ...]
    body: str
    extensions: tuple[str, ...] = ()


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    """The note text of a checkpoint. Raises ``EvidenceError`` for an invalid origin/size/root."""
    if not origin or any(c.isspace() for c in origin) or "+" in origin:
        raise EvidenceError(f"checkpoint origin {origin!r} must be non-empty, no spaces or '+'")
    if size < 0:
        raise EvidenceError("checkpoint tree size is negative")
    if len(root) != 32:
        raise EvidenceError("checkpoint root is not a 32-byte hash")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode('ascii')}\n"


def sign_checkpoint(origin: str, size: int, root: bytes, keyring: KeyRing) -> str:
    """A signed checkpoint for the tree of ``size`` leaves with ``root``, key name = origin.

    Raises ``EvidenceError`` for an invalid origin, size or root.
    """
    body = checkpoint_body(origin, size, root)
    signature = keyring.sign(body.encode("utf-8"))
    blob = note_key_hash(origin, keyring.current_public_key()) + signature
    return f"{body}\n{_DASH} {origin} {base64.b64encode(blob).decode('ascii')}\n"


def parse_checkpoint(text: str) -> ParsedCheckpoint:
    """Split a signed checkpoint into its parts without verifying anything.

    Raises ``EvidenceError`` when the note or the checkpoint body is malformed.
    """
    if not isinstance(text, str) or len(text) > _MAX_NOTE:
        raise EvidenceError("checkpoint is not a note text of reasonable size")
    body, sep, sig_block = text.partition("\n\n")
    if not sep or not sig_block.endswith("\n"):
        raise EvidenceError("checkpoint is not a signed note (no blank line before signatures)")
    body += "\n"
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise EvidenceError("checkpoint contains control characters")
    lines = body.split("\n")[:-1]
    if len(lines) < 3:
        raise EvidenceError("checkpoint body needs origin, tree size and root hash lines")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise EvidenceError("checkpoint origin line is empty")
    if not size_text.isascii() or not size_text.isdigit() or size_text != str(int(size_text)):
        raise EvidenceError(f"checkpoint tree size {size_text!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError):
        raise EvidenceError("checkpoint root hash is not base64") from None
    if len(root) != 32:
        raise EvidenceError("checkpoint root hash is not 32 bytes")
    signatures = []
    for line in sig_block[:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _DASH or not parts[1]:
            raise EvidenceError(f"malformed checkpoint signature line {line!r}")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except (binascii.Error, ValueError):
            raise EvidenceError("checkpoint signature is not base64") from None
        if len(blob) < 5:
            raise EvidenceError("checkpoint signature is too short")
        signatures.append(NoteSignature(parts[1], blob[:4], blob[4:]))
    return ParsedCheckpoint(
        origin, int(size_text), root, tuple(signatures), body, tuple(extensions)
    )


def verify_checkpoint(text: str, keys: PublicKeys, origin: str | None = None) -> tuple[int, bytes]:
    """Verify a signed checkpoint and return ``(size, root)``.

    Needs one signature under key name = origin by a key in ``keys`` that verifies.
    Signatures by unknown keys are ignored (signed-note rules); a matching key whose
    signature fails is an error.

    Raises ``EvidenceError`` for a malformed note, an origin other than ``origin``, no
    signature by a known key, or a signature that does not verify.
    """
    parsed = parse_checkpoint(text)
    if origin is not None and parsed.origin != origin:
        raise EvidenceError(f"checkpoint origin is {parsed.origin!r}, expected {origin!r}")
    by_hash = {note_key_hash(parsed.origin, public): kid for kid, public in keys.items()}
    message = parsed.body.encode("utf-8")
    for sig in parsed.signatures:
        kid = by_hash.get(sig.key_hash) if sig.name == parsed.origin else None
        if kid is None:
            continue
        if len(sig.signature) != 64:
            raise EvidenceError(f"checkpoint signature by {kid} is not 64 bytes")
        try:
            keys.verify(kid, message, sig.signature)
        except EvidenceError:
            raise EvidenceError(f"checkpoint signature by {kid} does not verify") from None
        return parsed.size, parsed.root
    raise EvidenceError(f"checkpoint for {parsed.origin} is not signed by any published key")


__all__ = [
    "DEFAULT_ORIGIN",
    "NoteSignature",
    "ParsedCheckpoint",
    "checkpoint_body",
    "parse_checkpoint",
    "sign_checkpoint",
    "verify_checkpoint",
]
