"""DSSE envelopes, cross-checked with securesystemslib's independent implementation."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError

# securesystemslib.signer re-exports these without __all__ (its typing is incomplete)
from securesystemslib.signer import CryptoSigner, SSlibKey  # type: ignore[attr-defined]

from bot.errors import EvidenceError
from bot.evidence import dsse
from bot.evidence.keys import KeyRing

PAYLOAD = b'{"_type":"https://in-toto.io/Statement/v1"}'


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing.create(tmp_path / "keys")


def sslib_key(ring: KeyRing, kid: str | None = None) -> SSlibKey:
    kid = kid or ring.kid
    return SSlibKey(kid, "ed25519", "ed25519", {"public": ring.public_key(kid).hex()})


def sslib_verify(envelope: dict[str, Any], key: SSlibKey) -> bytes:
    parsed = Envelope.from_dict(copy.deepcopy(envelope))
    parsed.verify([key], 1)
    return parsed.payload


def test_pae_matches_the_spec_example() -> None:
    # DSSE protocol.md test vector
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert dsse.pae("t", b"") == b"DSSEv1 1 t 0 "


def test_envelope_verifies_with_ours_and_securesystemslib(ring: KeyRing) -> None:
    envelope = dsse.sign_envelope(PAYLOAD, dsse.PAYLOAD_TYPE, ring)
    assert envelope["signatures"][0]["keyid"] == ring.kid
    assert dsse.verify_envelope(envelope, ring) == PAYLOAD
    assert sslib_verify(envelope, sslib_key(ring)) == PAYLOAD
    assert Envelope.from_dict(copy.deepcopy(envelope)).pae() == dsse.pae(dsse.PAYLOAD_TYPE, PAYLOAD)


def test_envelope_signed_by_securesystemslib_verifies_with_ours(
    ring: KeyRing, tmp_path: Path
) -> None:
    seed = bytes.fromhex((tmp_path / "keys" / f"{ring.kid}.key").read_text().strip())
    signer = CryptoSigner(Ed25519PrivateKey.from_private_bytes(seed), sslib_key(ring))
    theirs = Envelope(PAYLOAD, dsse.PAYLOAD_TYPE, {})
    theirs.sign(signer)
    assert dsse.verify_envelope(theirs.to_dict(), ring) == PAYLOAD


def tamper_payload(envelope: dict[str, Any]) -> None:
    envelope["payload"] = base64.b64encode(PAYLOAD.replace(b"Statement", b"Statemenx")).decode()


def tamper_type(envelope: dict[str, Any]) -> None:
    envelope["payloadType"] = "application/json"


def tamper_sig(envelope: dict[str, Any]) -> None:
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[10] ^= 1
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()


@pytest.mark.parametrize("tamper", [tamper_payload, tamper_type, tamper_sig])
def test_tampering_fails_both_implementations(ring: KeyRing, tamper: Any) -> None:
    envelope = dsse.sign_envelope(PAYLOAD, dsse.PAYLOAD_TYPE, ring)
    tamper(envelope)
    with pytest.raises(EvidenceError):
        dsse.verify_envelope(envelope, ring)
    with pytest.raises(EvidenceError, match="does not verify"):
        dsse.verify_envelope(envelope, ring, payload_type=envelope["payloadType"])
    with pytest.raises(VerificationError):
        sslib_verify(envelope, sslib_key(ring))


def test_unknown_key_is_named(ring: KeyRing, tmp_path: Path) -> None:
    other = KeyRing.create(tmp_path / "other")
    envelope = dsse.sign_envelope(PAYLOAD, dsse.PAYLOAD_TYPE, other)
    with pytest.raises(EvidenceError, match=other.kid):
        dsse.verify_envelope(envelope, ring)


def test_extra_signature_by_unknown_key_is_ignored(ring: KeyRing, tmp_path: Path) -> None:
    other = KeyRing.create(tmp_path / "other")
    envelope = dsse.sign_envelope(PAYLOAD, dsse.PAYLOAD_TYPE, ring)
    envelope["signatures"].insert(0, dsse.sign_envelope(PAYLOAD, "x", other)["signatures"][0])
    assert dsse.verify_envelope(envelope, ring) == PAYLOAD


def test_old_envelopes_verify_after_rotation(ring: KeyRing) -> None:
    envelope = dsse.sign_envelope(PAYLOAD, dsse.PAYLOAD_TYPE, ring)
    old = ring.kid
    ring.rotate()
    assert dsse.verify_envelope(envelope, ring) == PAYLOAD
    assert sslib_verify(envelope, sslib_key(ring, old)) == PAYLOAD


def test_encode_is_canonical_and_decode_round_trips(ring: KeyRing) -> None:
    envelope = dsse.sign_envelope(PAYLOAD, dsse.PAYLOAD_TYPE, ring)
    data = dsse.encode(envelope)
    assert data.startswith(b'{"payload":"')
    assert dsse.decode(data) == envelope
    with pytest.raises(EvidenceError, match="canonical"):
        dsse.decode(json.dumps(envelope, indent=1).encode())


@pytest.mark.parametrize(
    "bad",
    [
        b"not json",
        b"[]",
        b'{"payloadType":"x","signatures":[{"sig":"AA=="}]}',
        b'{"payload":"AA==","signatures":[{"sig":"AA=="}]}',
        b'{"payload":"AA==","payloadType":"x","signatures":[]}',
        b'{"payload":"AA==","payloadType":"x","signatures":[{"keyid":"k"}]}',
    ],
)
def test_decode_refuses_non_envelopes(bad: bytes) -> None:
    with pytest.raises(EvidenceError):
        dsse.decode(bad)


def test_bad_base64_is_named(ring: KeyRing) -> None:
    envelope = dsse.sign_envelope(PAYLOAD, dsse.PAYLOAD_TYPE, ring)
    envelope["payload"] = "***"
    with pytest.raises(EvidenceError, match="payload is not valid base64"):
        dsse.verify_envelope(envelope, ring)


@pytest.mark.parametrize("payload_type", [dsse.PAYLOAD_TYPE, 'odd "type"\n\u00e9'])
def test_sign_encoded_equals_encode_of_sign_envelope(ring: KeyRing, payload_type: str) -> None:
    assert dsse.sign_encoded(PAYLOAD, payload_type, ring) == dsse.encode(
        dsse.sign_envelope(PAYLOAD, payload_type, ring)
    )
