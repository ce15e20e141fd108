"""Ed25519 signing keys: the on-disk key ring, key ids, JWKS and signed-note verifier keys.

Owns the ``keys/`` directory (SPEC §4 ``keys.dir``)::

    keys/                    0700
      keyring.json           public manifest: current kid + every key ever used (public part)
      ed25519-<16 hex>.key   0600, the 32-byte Ed25519 seed in hex, one per key

Key id (SPEC §7 "Key ids"): ``"ed25519-" + first 16 hex chars of SHA-256(raw public key)``.
It is a pure function of the public key, so anyone can recompute it from ``/v1/keys``; the
same string is the DSSE ``keyid``, the JWT ``kid`` and the JWKS ``kid``.

Rotation appends a key and makes it current. Retired keys never sign again; their public
keys stay in the manifest (and so in ``/v1/keys``) forever, so old evidence keeps verifying
even if a retired private key file is deleted.

Signing and verification use PyNaCl (libsodium). Errors: ``ConfigError`` for a key ring that
cannot be created or loaded; ``EvidenceError`` for unknown key ids and bad signatures.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import stat
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.signing

from bot.domain import rfc3339
from bot.errors import ConfigError, EvidenceError

log = logging.getLogger(__name__)

MANIFEST = "keyring.json"
_KEY_SUFFIX = ".key"
_LOCK = ".keyring.lock"
CURRENT = "current"
RETIRED = "retired"


def key_id(public_key: bytes) -> str:
    """The key id of a raw 32-byte Ed25519 public key."""
    return "ed25519-" + hashlib.sha256(public_key).hexdigest()[:16]


#: standard base64's two last letters as base64url writes them (RFC 4648 §5)
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2), as JWK and JWS use. (``binascii`` straight: every
    auto-tier grant encodes its claims and signature, and ``base64.urlsafe_b64encode`` is
    two Python calls more.)"""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url. Raises ``ValueError`` (incl. ``binascii.Error``)."""
    if not isinstance(text, str) or any(c in text for c in "=+/"):
        raise ValueError("not unpadded base64url")
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def note_key_hash(name: str, public_key: bytes) -> bytes:
    """C2SP signed-note key hash of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n\x01" + public_key).digest()[:4]


def note_verifier_key(name: str, public_key: bytes) -> str:
    """C2SP signed-note verifier key string ``name+hash+base64(0x01 || key)``."""
    encoded = base64.b64encode(b"\x01" + public_key).decode("ascii")
    return f"{name}+{note_key_hash(name, public_key).hex()}+{encoded}"


class PublicKeys:
    """Published Ed25519 public keys by key id: what an offline verifier needs.

    Build one from a JWKS (``from_jwks``) or from raw keys. ``current`` names the key that
    signs new evidence, if known.
    """

    def __init__(
        self,
        keys: Mapping[str, bytes],
        current: str | None = None,
        revoked: Mapping[str, datetime] | None = None,
    ) -> None:
        self._keys: dict[str, bytes] = {}
        self._verifiers: dict[str, nacl.signing.VerifyKey] = {}
        for kid, public in keys.items():
            self._add(kid, public)
        if current is not None and current not in self._keys:
            raise EvidenceError(f"current key {current} is not among the keys")
        self._current = current
        #: kid -> the time after which its signatures no longer count (``keys revoke``)
        self.revoked: dict[str, datetime] = dict(revoked or {})

    def check_not_revoked(self, kid: str, at: datetime | None = None) -> None:
        """Raises ``EvidenceError`` when ``kid`` is revoked and the signature is dated after
        the revocation (``at`` None: undated, e.g. a grant: refused outright)."""
        since = self.revoked.get(kid)
        if since is None:
            return
        if at is None or at > since:
            raise EvidenceError(
                f"signed by key {kid}, revoked since {rfc3339(since)}"
                + (f" (signature dated {rfc3339(at)})" if at is not None else "")
            )

    def _add(self, kid: str, public: bytes) -> None:
        if len(public) != 32:
            raise EvidenceError(f"key {kid} is not a 32-byte Ed25519 public key")
        if kid != key_id(public):
            raise EvidenceError(f"key id {kid} does not match its public key")
        self._keys[kid] = bytes(public)
        self._verifiers[kid] = nacl.signing.VerifyKey(bytes(public))

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any]) -> PublicKeys:
        """Keys from a JWKS such as ``GET /v1/keys`` serves. Non-Ed25519 keys are skipped.

        Raises ``EvidenceError`` for a malformed JWKS or a ``kid`` that does not match its key.
        """
        entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(entries, list):
            raise EvidenceError('key set is not a JWKS object with a "keys" list')
        keys: dict[str, bytes] = {}
        revoked: dict[str, datetime] = {}
        current = None
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise EvidenceError("key set entry is not an object")
            if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
                continue
            kid, x = entry.get("kid"), entry.get("x")
            if not isinstance(kid, str) or not isinstance(x, str):
                raise EvidenceError("Ed25519 key set entry lacks a kid or x")
            try:
                keys[kid] = b64url_decode(x)
            except ValueError as exc:
                raise EvidenceError(f"key {kid} has a malformed x value") from exc
            if entry.get("status") == CURRENT:
                current = kid
            if isinstance(entry.get("revoked_since"), str):
                revoked[kid] = _parse_iso(entry["revoked_since"])
        return cls(keys, current, revoked)

    @property
    def kids(self) -> tuple[str, ...]:
        """Key ids, oldest first."""
        return tuple(self._keys)

    @property
    def current_kid(self) -> str | None:
        return self._current

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def items(self) -> Iterator[tuple[str, bytes]]:
        """(kid, raw public key) pairs, oldest first."""
        return iter(self._keys.items())

    def raw(self) -> dict[str, bytes]:
        """A plain ``{kid: public key}`` copy (picklable, for worker processes)."""
        return dict(self._keys)

    def public_key(self, kid: str) -> bytes:
        """Raw public key for ``kid``. Raises ``EvidenceError`` for an unknown kid."""
        try:
            return self._keys[kid]
        except (KeyError, TypeError):
            raise EvidenceError(f"unknown signing key {kid!r}") from None

    def verify(self, kid: str, message: bytes, signature: bytes) -> None:
        """Raises ``EvidenceError`` unless ``signature`` is ``kid``'s signature of ``message``."""
        verifier = self._verifiers.get(kid) if isinstance(kid, str) else None
        if verifier is None:
            raise EvidenceError(f"unknown signing key {kid!r}")
        if len(signature) != 64:
            raise EvidenceError(f"signature by {kid} is not 64 bytes")
        try:
            verifier.verify(message, signature)
        except nacl.exceptions.BadSignatureError:
            raise EvidenceError(f"signature by {kid} does not verify") from None

    def jwks(self) -> dict[str, Any]:
        """RFC 7517 JWK Set (RFC 8037 OKP keys) with a ``status`` extension member."""
        return {
            "keys": [
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": b64url(public),
                    "kid": kid,
                    "use": "sig",
                    "alg": "EdDSA",
                    "status": CURRENT if kid == self._current else RETIRED,
                    **(
                        {"revoked_since": rfc3339(self.revoked[kid])} if kid in self.revoked else {}
                    ),
                }
                for kid, public in self._keys.items()
            ]
        }

    def note_verifier_key(self, name: str, kid: str | None = None) -> str:
        """C2SP verifier key for ``kid`` (default: the current key) under note key ``name``."""
        chosen = kid or self._current
        if chosen is None:
            raise EvidenceError("no current key")
        return note_verifier_key(name, self.public_key(chosen))


class KeyRing(PublicKeys):
    """The server's key ring: every public key plus the current private key (a ``Signer``)."""

    #: the current key as libsodium's 64-byte secret key (seed, then public key; ``_use``)
    _secret: bytes

    def __init__(
        self, directory: Path, keys: Mapping[str, bytes], current: str, signing_key: bytes
    ) -> None:
        super().__init__(keys, current)
        self.directory = directory
        self._use(nacl.signing.SigningKey(signing_key))
        if key_id(self.current_public_key()) != current:
            raise ConfigError(f"{directory}: key file for {current} holds a different key")
        self._created: dict[str, str] = {}

    # -- construction -----------------------------------------------------------------

    @classmethod
    def create(cls, directory: str | os.PathLike[str], *, now: datetime | None = None) -> KeyRing:
        """Create ``directory`` (0700) with a first key. Never overwrites an existing ring.

        Raises ``ConfigError`` when a key ring already exists there or it cannot be written.
        """
        path = Path(directory)
        if (path / MANIFEST).exists():
            raise ConfigError(f"{path}: a key ring already exists; use `signoff keys rotate`")
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(path, 0o700)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot create the key directory: {exc.strerror}") from exc
        seed = nacl.signing.SigningKey.generate()
        kid = _write_key(path, seed)
        manifest = {"current": kid, "keys": [_manifest_entry(kid, seed, now)]}
        _write_manifest(path, manifest)
        log.info("created key ring in %s with key %s", path, kid)
        return cls.load(path)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> KeyRing:
        """Load the ring in ``directory``.

        Raises ``ConfigError`` (one line) when the directory, manifest or current key file is
        missing, unreadable or malformed. Logs a warning when the current private key file is
        readable by group or others.
        """
        path = Path(directory)
        manifest_path = path / MANIFEST
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"{path}: no signing keys here (missing {MANIFEST}); run `signoff init`"
            ) from None
        except OSError as exc:
            raise ConfigError(f"{manifest_path}: cannot read: {exc.strerror}") from exc
        except ValueError as exc:
            raise ConfigError(f"{manifest_path}: not valid JSON: {exc}") from exc
        try:
            current = manifest["current"]
            keys = {entry["kid"]: b64url_decode(entry["public"]) for entry in manifest["keys"]}
            created = {entry["kid"]: entry.get("created_at", "") for entry in manifest["keys"]}
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{manifest_path}: malformed key manifest") from exc
        if not isinstance(current, str) or current not in keys:
            raise ConfigError(f"{manifest_path}: current key {current!r} is not listed")
        seed = _read_key(path / f"{current}{_KEY_SUFFIX}")
        try:
            ring = cls(path, keys, current, seed)
        except EvidenceError as exc:
            raise ConfigError(f"{manifest_path}: {exc.message}") from exc
        ring._created = created
        try:
            ring.revoked = {
                entry["kid"]: _parse_iso(entry["revoked_since"])
                for entry in manifest["keys"]
                if entry.get("revoked_since")
            }
        except EvidenceError as exc:
            raise ConfigError(f"{manifest_path}: {exc.message}") from exc
        return ring

    def rotate(self, *, now: datetime | None = None) -> str:
        """Add a new key and make it current; returns its kid. The old keys stay published.

        Safe against other processes rotating the same directory at the same time: the
        manifest is re-read and rewritten under an exclusive lock on the directory, so no
        rotation drops another's key.

        Raises ``ConfigError`` when the new key cannot be written.
        """
        with _locked(self.directory):
            on_disk = KeyRing.load(self.directory)  # keys other processes added meanwhile
            for known, public in on_disk.items():
                if known not in self:
                    self._add(known, public)
            self._created.update(on_disk._created)
            seed = nacl.signing.SigningKey.generate()
            kid = _write_key(self.directory, seed)
            entry = _manifest_entry(kid, seed, now)
            self.revoked.update(on_disk.revoked)
            _write_manifest(
                self.directory, {"current": kid, "keys": [*self._manifest_entries(), entry]}
            )
        old = self._current
        self._add(kid, bytes(seed.verify_key))
        self._created[kid] = entry["created_at"]
        self._use(seed)
        self._current = kid
        log.info("rotated signing key %s -> %s", old, kid)
        return kid

    def _manifest_entries(self) -> list[dict[str, str]]:
        entries = []
        for k, pub in self.items():
            entry = {"kid": k, "public": b64url(pub), "created_at": self._created.get(k, "")}
            if k in self.revoked:
                entry["revoked_since"] = rfc3339(self.revoked[k])
            entries.append(entry)
        return entries

    def revoke(self, kid: str, since: datetime) -> None:
        """Mark ``kid`` revoked from ``since`` on (kept published: older signatures still
        verify). Raises ``ConfigError`` for an unknown kid or the current signing key."""
        with _locked(self.directory):
            on_disk = KeyRing.load(self.directory)
            if kid not in on_disk:
                raise ConfigError(f"no key {kid} in {self.directory}")
            if kid == on_disk.kid:
                raise ConfigError(
                    f"{kid} is the current signing key; run `signoff keys rotate` first"
                )
            self.reload()
            self.revoked.update(on_disk.revoked)
            self.revoked[kid] = since.astimezone(UTC)
            _write_manifest(
                self.directory, {"current": on_disk.kid, "keys": self._manifest_entries()}
            )
        log.warning("key %s revoked since %s", kid, rfc3339(since))

    def reload(self) -> bool:
        """Re-read the directory, e.g. after `signoff keys rotate` in another process; True
        when the current signing key changed. Keys are only ever added, never dropped.

        Raises ``ConfigError`` (the ring in memory is then unchanged).
        """
        fresh = KeyRing.load(self.directory)
        changed = fresh.kid != self._current
        for kid, public in fresh.items():
            if kid not in self:
                self._add(kid, public)
        self._created.update(fresh._created)
        self.revoked.update(fresh.revoked)
        self._secret = fresh._secret
        self._current = fresh._current
        if changed:
            log.info("signing key reloaded: now %s", fresh.kid)
        return changed

    # -- Signer ---------------------------------------------------------------------

    @property
    def kid(self) -> str:
        """Key id of the current signing key."""
        if self._current is None:  # pragma: no cover -- __init__ always sets it
            raise EvidenceError("no current key")
        return self._current

    def sign(self, message: bytes) -> bytes:
        """64-byte Ed25519 signature of ``message`` with the current key (libsodium's
        ``crypto_sign`` straight: the signature is the first 64 bytes of its signed message,
        what ``SigningKey.sign`` returns as ``.signature`` after building two objects)."""
        return nacl.bindings.crypto_sign(message, self._secret)[:64]

    def _use(self, key: nacl.signing.SigningKey) -> None:
        """Sign with ``key`` from now on. ``_secret`` is its 64-byte libsodium secret key:
        the 32-byte seed, then the public key (the one form of the key kept)."""
        self._secret = nacl.bindings.crypto_sign_seed_keypair(bytes(key))[1]

    def current_public_key(self) -> bytes:
        return self._secret[32:]

    def public(self) -> PublicKeys:
        """An immutable snapshot of the published keys (for verifiers and worker processes)."""
        return PublicKeys(self.raw(), self._current, self.revoked)


def _parse_iso(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 time with a zone. Raises ``EvidenceError``."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise EvidenceError(f"{text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise EvidenceError(f"{text!r} has no time zone (add Z for UTC)")
    return moment.astimezone(UTC)


def _manifest_entry(kid: str, key: nacl.signing.SigningKey, now: datetime | None) -> dict[str, str]:
    at = rfc3339(now or datetime.now(UTC))
    return {"kid": kid, "public": b64url(bytes(key.verify_key)), "created_at": at}


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on the key directory, across processes (``flock`` on a lock file
    beside the manifest; released when the file closes, also when the process dies).

    Raises ``ConfigError`` when the lock file cannot be opened."""
    path = directory / _LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot lock the key directory: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_key(directory: Path, key: nacl.signing.SigningKey) -> str:
    """Write the seed 0600 with O_EXCL (never overwrite); returns the kid."""
    kid = key_id(bytes(key.verify_key))
    target = directory / f"{kid}{_KEY_SUFFIX}"
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write the private key: {exc.strerror}") from exc
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(bytes(key).hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return kid


def _write_manifest(directory: Path, manifest: Mapping[str, Any]) -> None:
    """Atomically replace the manifest (write a temp file, fsync, rename)."""
    target = directory / MANIFEST
    tmp = directory / f".{MANIFEST}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write the key manifest: {exc.strerror}") from exc


def read_private_key(path: Path) -> bytes:
    """The 32-byte seed in one private key file (``keys/*.key``). Raises ``ConfigError``."""
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise ConfigError(f"{path}: the current private key file is missing") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the private key: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: malformed private key file") from exc
    if stat.S_IMODE(mode) & 0o077:
        log.warning(
            "private key %s is readable by group or others (mode %o); chmod 600 it",
            path,
            stat.S_IMODE(mode),
        )
    try:
        seed = bytes.fromhex(text.strip())
    except ValueError as exc:
        raise ConfigError(f"{path}: malformed private key file") from exc
    if len(seed) != 32:
        raise ConfigError(f"{path}: malformed private key file (not a 32-byte seed)")
    return seed


__all__ = [
    "CURRENT",
    "RETIRED",
    "KeyRing",
    "PublicKeys",
    "b64url",
    "b64url_decode",
    "key_id",
    "note_key_hash",
    "note_verifier_key",
]
