"""Signed policy bundles (SPEC §3 ``signoff policy sign``, §5): which reviewed policy is in force.

A bundle is every file under ``policy.paths`` taken together; its digest is the policy digest
(SHA-256 of the canonical content, what every evaluation records). ``signoff policy sign``
writes a DSSE envelope over it, with a payload type of its own::

    payloadType: application/vnd.signoff.policy-bundle+json
    payload (RFC 8785 JSON): {"_type": "https://signoff.dev/policy-bundle/v1",
                              "digest": "sha256:…", "name": …, "version": <metadata.version>,
                              "keyid": <signer kid>, "signed_at": <RFC 3339 UTC>}

With ``policy.trusted_keys`` set (JWKS files as ``/v1/keys`` serves them, whose
``revoked_since`` marks revoked keys, or PEM Ed25519 public keys), a policy loads only when
the envelope verifies with one of those keys, names exactly the loaded digest, and was not
signed after its key's revocation. The envelope lives in ``policy.signature`` (default:
``policy.sig.json`` in the first policy folder, or ``<file>.sig.json`` next to a lone file).

Imports nothing from ``bot.policy`` (the layers keep policy and evidence apart): callers pass
the digest. Errors: ``EvidenceError`` for an envelope that does not verify or does not match,
``ConfigError`` for key or envelope files that cannot be read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nacl.signing
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from bot.errors import ConfigError, EvidenceError
from bot.evidence.canonical import canonical
from bot.evidence.dsse import sign_envelope, verify_envelope
from bot.evidence.keys import PublicKeys, key_id, read_private_key
from bot.evidence.statement import rfc3339

PAYLOAD_TYPE = "application/vnd.signoff.policy-bundle+json"
BUNDLE_TYPE = "https://signoff.dev/policy-bundle/v1"
SIGNATURE_NAME = "policy.sig.json"


class FileSigner:
    """A ``Signer`` from one private key file of a signoff key ring (``keys/*.key``)."""

    def __init__(self, path: Path) -> None:
        """Raises ``ConfigError`` when the file is missing or malformed."""
        self._key = nacl.signing.SigningKey(read_private_key(path))
        self.kid = key_id(bytes(self._key.verify_key))

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message).signature)


def default_signature_path(paths: Sequence[Path]) -> Path:
    """Where the envelope of the policy in ``paths`` lives unless configured."""
    first = paths[0]
    return first / SIGNATURE_NAME if first.is_dir() else first.with_name(first.name + ".sig.json")


def sign_bundle(
    digest: str, version: str | None, name: str | None, signer: FileSigner, now: datetime
) -> dict[str, Any]:
    """The DSSE envelope over the bundle with ``digest``."""
    statement = {
        "_type": BUNDLE_TYPE,
        "digest": digest,
        "name": name,
        "version": version,
        "keyid": signer.kid,
        "signed_at": rfc3339(now),
    }
    return sign_envelope(canonical(statement), PAYLOAD_TYPE, signer)


def verify_bundle(envelope: Mapping[str, Any], digest: str, trusted: PublicKeys) -> str:
    """The key id that signed the bundle with ``digest``. Raises ``EvidenceError`` when the
    envelope is malformed, of another payload type, not signed by a trusted key, signed by a
    key revoked before the signing time, or over another bundle."""
    payload = verify_envelope(envelope, trusted, payload_type=PAYLOAD_TYPE)
    try:
        statement = json.loads(payload)
    except ValueError as exc:
        raise EvidenceError("policy signature payload is not JSON") from exc
    if not isinstance(statement, dict) or statement.get("_type") != BUNDLE_TYPE:
        raise EvidenceError(f"policy signature payload is not a {BUNDLE_TYPE} statement")
    signed = [sig.get("keyid") for sig in envelope["signatures"] if sig.get("keyid") in trusted]
    kid = statement.get("keyid")
    if kid not in signed:
        raise EvidenceError(
            f"policy signature names key {kid!r}, but no trusted key by that id signed it"
        )
    at = _when(statement.get("signed_at"))
    trusted.check_not_revoked(str(kid), at)
    if statement.get("digest") != digest:
        raise EvidenceError(
            f"policy signature is over bundle {statement.get('digest')!r}, but the policy "
            f"files are {digest} (changed since signing, or another bundle's signature)"
        )
    return str(kid)


def _when(value: object) -> datetime:
    if not isinstance(value, str):
        raise EvidenceError("policy signature has no signed_at time")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise EvidenceError(f"policy signature time {value!r} is not RFC 3339") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def read_envelope(path: Path) -> dict[str, Any]:
    """The envelope in ``path``. Raises ``EvidenceError`` (missing: the bundle is unsigned;
    not JSON) so that a bad signature file and a bad signature are refused alike."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvidenceError(
            f"{path}: no policy signature (unsigned bundle; sign it with `signoff policy sign`)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EvidenceError(f"{path}: cannot read the policy signature: {exc}") from exc
    except ValueError as exc:
        raise EvidenceError(f"{path}: policy signature is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise EvidenceError(f"{path}: policy signature is not a DSSE envelope")
    return data


def load_trusted_keys(paths: Sequence[Path]) -> PublicKeys:
    """Every Ed25519 public key in ``paths`` (JWKS JSON or PEM), with the JWKS revocations.
    Raises ``ConfigError`` naming the file that cannot be used."""
    keys: dict[str, bytes] = {}
    revoked: dict[str, datetime] = {}
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read trusted key file ({exc})") from exc
        try:
            if text.lstrip().startswith("-----BEGIN"):
                raw = _pem(text)
                keys[key_id(raw)] = raw
            else:
                found = PublicKeys.from_jwks(json.loads(text))
                keys.update(found.raw())
                revoked.update(found.revoked)
        except (ValueError, EvidenceError) as exc:
            raise ConfigError(f"{path}: not a JWKS or PEM Ed25519 public key ({exc})") from exc
    if not keys:
        raise ConfigError("policy.trusted_keys holds no Ed25519 public key")
    return PublicKeys(keys, revoked=revoked)


def _pem(text: str) -> bytes:
    try:
        key = load_pem_public_key(text.encode("ascii"))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(str(exc)) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the PEM key is not Ed25519")
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)
