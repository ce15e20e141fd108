"""Signed policy bundles (bot.evidence.bundle): DSSE over the policy digest, verified by ours
and by securesystemslib; every way a bundle can be wrong is refused with a clear error."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from securesystemslib.dsse import Envelope

# securesystemslib.signer re-exports these without __all__ (its typing is incomplete)
from securesystemslib.signer import SSlibKey  # type: ignore[attr-defined]

from bot.errors import ConfigError, EvidenceError
from bot.evidence.bundle import (
    PAYLOAD_TYPE,
    FileSigner,
    default_signature_path,
    load_trusted_keys,
    read_envelope,
    sign_bundle,
    verify_bundle,
)
from bot.evidence.keys import KeyRing, PublicKeys

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
NOW = datetime(2026, 12, 2, 1, 30, tzinfo=UTC)


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing.create(tmp_path / "keys")


@pytest.fixture
def signer(ring: KeyRing, tmp_path: Path) -> FileSigner:
    return FileSigner(tmp_path / "keys" / f"{ring.kid}.key")


def trusted(ring: KeyRing, revoked: dict[str, datetime] | None = None) -> PublicKeys:
    return PublicKeys(ring.raw(), revoked=revoked)


def test_a_signed_bundle_verifies_with_ours_and_securesystemslib(
    ring: KeyRing, signer: FileSigner
) -> None:
    envelope = sign_bundle(DIGEST, "2026-11-21", "example", signer, NOW)
    assert envelope["payloadType"] == PAYLOAD_TYPE
    assert verify_bundle(envelope, DIGEST, trusted(ring)) == ring.kid
    key = SSlibKey(ring.kid, "ed25519", "ed25519", {"public": ring.public_key(ring.kid).hex()})
    parsed = Envelope.from_dict(copy.deepcopy(envelope))
    parsed.verify([key], 1)
    statement = json.loads(parsed.payload)
    assert statement == {
        "_type": "https://signoff.dev/policy-bundle/v1",
        "digest": DIGEST,
        "name": "example",
        "version": "2026-11-21",
        "keyid": ring.kid,
        "signed_at": "2026-12-02T01:30:00Z",
    }


def test_a_changed_policy_does_not_match_its_signature(ring: KeyRing, signer: FileSigner) -> None:
    envelope = sign_bundle(OTHER, None, None, signer, NOW)
    with pytest.raises(EvidenceError, match=f"signature is over bundle '{OTHER}'"):
        verify_bundle(envelope, DIGEST, trusted(ring))


def test_an_altered_envelope_does_not_verify(ring: KeyRing, signer: FileSigner) -> None:
    envelope = sign_bundle(OTHER, None, None, signer, NOW)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["digest"] = DIGEST  # point the signature at the loaded bundle
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(EvidenceError, match="does not verify"):
        verify_bundle(envelope, DIGEST, trusted(ring))
    typed = sign_bundle(DIGEST, None, None, signer, NOW)
    typed["payloadType"] = "application/vnd.in-toto+json"
    with pytest.raises(EvidenceError, match="payloadType"):
        verify_bundle(typed, DIGEST, trusted(ring))


def test_an_untrusted_key_is_refused(ring: KeyRing, signer: FileSigner, tmp_path: Path) -> None:
    other = KeyRing.create(tmp_path / "other")
    envelope = sign_bundle(DIGEST, None, None, signer, NOW)
    with pytest.raises(EvidenceError, match=f"not signed by any published key.*{ring.kid}"):
        verify_bundle(envelope, DIGEST, trusted(other))


def test_a_key_revoked_before_the_signature_is_refused(ring: KeyRing, signer: FileSigner) -> None:
    envelope = sign_bundle(DIGEST, None, None, signer, NOW)
    with pytest.raises(EvidenceError, match=f"signed by key {ring.kid}, revoked since"):
        verify_bundle(envelope, DIGEST, trusted(ring, {ring.kid: NOW - timedelta(days=1)}))
    # signed before the revocation: still good (SPEC §3 keys revoke KID --since T)
    assert verify_bundle(envelope, DIGEST, trusted(ring, {ring.kid: NOW + timedelta(days=1)}))


def test_trusted_keys_from_a_jwks_with_revocations_and_from_pem(
    ring: KeyRing, tmp_path: Path
) -> None:
    jwks = ring.public().jwks()
    jwks["keys"][0]["revoked_since"] = "2026-12-01T00:00:00Z"
    (tmp_path / "keys.json").write_text(json.dumps(jwks))
    loaded = load_trusted_keys([tmp_path / "keys.json"])
    assert ring.kid in loaded and ring.kid in loaded.revoked
    pem = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    (tmp_path / "k.pem").write_bytes(pem)
    assert len(load_trusted_keys([tmp_path / "k.pem", tmp_path / "keys.json"])) == 2


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{}", 'not a JWKS or PEM Ed25519 public key (key set is not a JWKS object with a "keys"'),
        ('{"keys": []}', "policy.trusted_keys holds no Ed25519 public key"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a JWKS or PEM"),
        ("not json", "not a JWKS or PEM"),
    ],
)
def test_bad_trusted_key_files_are_config_errors(
    tmp_path: Path, content: str, problem: str
) -> None:
    (tmp_path / "k").write_text(content)
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(")):
        load_trusted_keys([tmp_path / "k"])


def test_an_unsigned_bundle_and_a_bad_signature_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(EvidenceError, match="no policy signature \\(unsigned bundle"):
        read_envelope(tmp_path / "policy.sig.json")
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(EvidenceError, match="not a DSSE envelope"):
        read_envelope(tmp_path / "bad.json")


def test_where_the_signature_lives_by_default(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    assert default_signature_path([tmp_path / "policies"]) == tmp_path / "policies/policy.sig.json"
    assert default_signature_path([tmp_path / "p.yaml"]) == tmp_path / "p.yaml.sig.json"


def test_a_signature_claiming_another_signer_is_refused(ring: KeyRing, signer: FileSigner) -> None:
    class Liar(FileSigner):
        def __init__(self, inner: FileSigner) -> None:
            self._inner = inner
            self.kid = "ed25519-0000000000000000"

        def sign(self, message: bytes) -> bytes:
            return self._inner.sign(message)

    envelope: dict[str, Any] = sign_bundle(DIGEST, None, None, Liar(signer), NOW)
    envelope["signatures"][0]["keyid"] = ring.kid  # signature by the trusted key...
    # ...but the statement inside names another key id
    with pytest.raises(EvidenceError, match="names key 'ed25519-0000000000000000'"):
        verify_bundle(envelope, DIGEST, trusted(ring))
