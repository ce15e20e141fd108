"""DSSE v1 envelopes (github.com/secure-systems-lab/dsse, ``envelope.md`` and ``protocol.md``).

Owns the envelope shape signoff stores and serves::

    {"payload": base64(payload), "payloadType": "application/vnd.in-toto+json",
     "signatures": [{"keyid": kid, "sig": base64(Ed25519(PAE(type, payload)))}]}

``encode`` is the RFC 8785 canonical JSON of that object: the exact bytes stored in the log
and hashed into its leaf (SPEC §7: leaf = SHA-256(0x00 || canonical JSON of the envelope)),
so anyone holding the parsed envelope recomputes the same leaf.

Errors: ``EvidenceError`` naming why an envelope does not verify or parse.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Mapping
from typing import Any

import orjson

from bot.errors import EvidenceError, RequestError
from bot.evidence.canonical import canonical, canonical_plain
from bot.evidence.keys import PublicKeys
from bot.ports import Signer

PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding: ``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``
    with lengths as ASCII decimal byte counts."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def b64encode(data: bytes) -> str:
    """Standard base64 with padding (RFC 4648 §4), as DSSE implementations emit."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def b64decode(text: object, what: str) -> bytes:
    """Strict standard base64; DSSE also allows URL-safe, which is accepted too.

    Raises ``EvidenceError`` naming ``what`` when ``text`` is not base64.
    """
    if not isinstance(text, str):
        raise EvidenceError(f"{what} is not a base64 string")
    try:
        if "-" in text or "_" in text:
            return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise EvidenceError(f"{what} is not valid base64") from None


def sign_envelope(payload: bytes, payload_type: str, signer: Signer) -> dict[str, Any]:
    """A DSSE envelope of ``payload`` signed by ``signer`` (its ``kid`` is the ``keyid``)."""
    signature = signer.sign(pae(payload_type, payload))
    return {
        "payload": b64encode(payload),
        "payloadType": payload_type,
        "signatures": [{"keyid": signer.kid, "sig": b64encode(signature)}],
    }


@functools.lru_cache(maxsize=16)
def _fixed_parts(payload_type: str, kid: str) -> tuple[bytes, bytes]:
    """The canonical JSON of an envelope's type and key id: the same for every envelope a
    key signs (a rotation brings a new pair). Raises ``EvidenceError``."""
    try:
        return canonical_plain(payload_type), canonical_plain(kid)
    except RequestError as exc:
        raise EvidenceError(f"envelope cannot be canonicalised: {exc.message}") from exc


def sign_encoded(payload: bytes, payload_type: str, signer: Signer) -> bytes:
    """``encode(sign_envelope(payload, payload_type, signer))`` without building the object:
    the envelope's keys are fixed, so its canonical form is assembled directly (the hot path
    of every attestation). Raises ``EvidenceError`` for a type or key id with a lone surrogate.
    """
    signature = signer.sign(pae(payload_type, payload))
    type_json, kid_json = _fixed_parts(payload_type, signer.kid)
    return b"".join(
        (
            b'{"payload":"',
            binascii.b2a_base64(payload, newline=False),
            b'","payloadType":',
            type_json,
            b',"signatures":[{"keyid":',
            kid_json,
            b',"sig":"',
            binascii.b2a_base64(signature, newline=False),
            b'"}]}',
        )
    )


def encode(envelope: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical JSON of ``envelope``: the stored bytes and the leaf pre-image.

    Raises ``EvidenceError`` if the envelope holds values that have no canonical form.
    """
    try:
        return canonical(envelope)
    except RequestError as exc:
        raise EvidenceError(f"envelope cannot be canonicalised: {exc.message}") from exc


def decode(data: bytes) -> dict[str, Any]:
    """Parse stored envelope bytes; they must be the canonical encoding of a DSSE envelope.

    Raises ``EvidenceError`` when the bytes are not JSON, not an envelope, or not canonical
    (a non-canonical encoding would hash to a leaf nobody can recompute from the object).
    """
    try:
        # orjson: ~4x the standard parser on ``audit verify``'s path. The canonical check
        # below holds it to the exact bytes (a duplicate key or any other spelling fails it),
        # and an envelope holds strings only, so no number's reading can differ.
        envelope = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise EvidenceError(f"envelope is not valid JSON: {exc}") from None
    check_shape(envelope)
    if encode(envelope) != data:
        raise EvidenceError("envelope bytes are not RFC 8785 canonical JSON")
    return envelope  # type: ignore[no-any-return]


def check_shape(envelope: object) -> None:
    """Raises ``EvidenceError`` unless ``envelope`` has the DSSE fields with the right types."""
    if not isinstance(envelope, Mapping):
        raise EvidenceError("envelope is not a JSON object")
    if not isinstance(envelope.get("payload"), str):
        raise EvidenceError("envelope has no payload string")
    if not isinstance(envelope.get("payloadType"), str):
        raise EvidenceError("envelope has no payloadType string")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise EvidenceError("envelope has no signatures")
    for sig in signatures:
        if not isinstance(sig, Mapping) or not isinstance(sig.get("sig"), str):
            raise EvidenceError("envelope signature entry lacks a sig string")
        if not isinstance(sig.get("keyid", ""), str):
            raise EvidenceError("envelope signature keyid is not a string")


def verify_envelope(
    envelope: Mapping[str, Any], keys: PublicKeys, *, payload_type: str = PAYLOAD_TYPE
) -> bytes:
    """Verify ``envelope`` against the published ``keys`` and return its payload bytes.

    Accepts when at least one signature is by a known key and verifies. Signatures by keys
    not in ``keys`` are ignored (DSSE); a signature by a known key that fails is an error
    (someone changed the payload, its type or the signature).

    Raises ``EvidenceError`` naming why: malformed envelope, unexpected payload type, no
    signature by a known key (naming the unknown key ids), or a signature that fails.
    """
    check_shape(envelope)
    if envelope["payloadType"] != payload_type:
        raise EvidenceError(
            f"envelope payloadType is {envelope['payloadType']!r}, expected {payload_type!r}"
        )
    payload = b64decode(envelope["payload"], "envelope payload")
    message = pae(envelope["payloadType"], payload)
    verified = False
    unknown: list[str] = []
    for sig in envelope["signatures"]:
        kid = sig.get("keyid", "")
        if kid not in keys:
            unknown.append(str(kid))
            continue
        keys.verify(kid, message, b64decode(sig["sig"], "envelope signature"))
        verified = True
    if not verified:
        raise EvidenceError(
            "envelope is not signed by any published key (signed by: "
            + (", ".join(unknown) or "no key id")
            + ")"
        )
    return payload


__all__ = [
    "PAYLOAD_TYPE",
    "b64decode",
    "b64encode",
    "check_shape",
    "decode",
    "encode",
    "pae",
    "sign_encoded",
    "sign_envelope",
    "verify_envelope",
]
