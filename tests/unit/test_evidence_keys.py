"""The on-disk key ring: creation, permissions, rotation, JWKS and key ids."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import stat
from pathlib import Path

import jwt
import pytest

from bot.errors import ConfigError, EvidenceError
from bot.evidence.keys import (
    CURRENT,
    RETIRED,
    KeyRing,
    PublicKeys,
    b64url_decode,
    key_id,
    note_key_hash,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_writes_private_key_0600_in_a_0700_dir(tmp_path: Path) -> None:
    ring = KeyRing.create(tmp_path / "keys")
    key_file = tmp_path / "keys" / f"{ring.kid}.key"
    assert mode(tmp_path / "keys") == 0o700
    assert mode(key_file) == 0o600
    assert len(bytes.fromhex(key_file.read_text().strip())) == 32


def test_kid_is_derived_from_the_public_key(tmp_path: Path) -> None:
    ring = KeyRing.create(tmp_path / "keys")
    public = ring.current_public_key()
    assert ring.kid == "ed25519-" + hashlib.sha256(public).hexdigest()[:16]
    assert key_id(public) == ring.kid


def test_create_never_overwrites(tmp_path: Path) -> None:
    ring = KeyRing.create(tmp_path / "keys")
    with pytest.raises(ConfigError, match="already exists"):
        KeyRing.create(tmp_path / "keys")
    assert KeyRing.load(tmp_path / "keys").kid == ring.kid


def test_load_signs_with_the_same_key(tmp_path: Path) -> None:
    ring = KeyRing.create(tmp_path / "keys")
    loaded = KeyRing.load(tmp_path / "keys")
    sig = loaded.sign(b"hello")
    ring.verify(ring.kid, b"hello", sig)


def test_missing_directory_is_one_clear_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="signoff init") as info:
        KeyRing.load(tmp_path / "nope")
    assert "\n" not in info.value.diagnostics()


def test_missing_current_key_file(tmp_path: Path) -> None:
    ring = KeyRing.create(tmp_path / "keys")
    (tmp_path / "keys" / f"{ring.kid}.key").unlink()
    with pytest.raises(ConfigError, match="missing"):
        KeyRing.load(tmp_path / "keys")


def test_malformed_key_file(tmp_path: Path) -> None:
    ring = KeyRing.create(tmp_path / "keys")
    (tmp_path / "keys" / f"{ring.kid}.key").write_text("zz\n")
    with pytest.raises(ConfigError, match="malformed"):
        KeyRing.load(tmp_path / "keys")


def test_key_file_that_does_not_match_its_kid(tmp_path: Path) -> None:
    ring = KeyRing.create(tmp_path / "keys")
    (tmp_path / "keys" / f"{ring.kid}.key").write_text("11" * 32 + "\n")
    with pytest.raises(ConfigError, match="different key"):
        KeyRing.load(tmp_path / "keys")


def test_malformed_manifest(tmp_path: Path) -> None:
    KeyRing.create(tmp_path / "keys")
    (tmp_path / "keys" / "keyring.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        KeyRing.load(tmp_path / "keys")
    (tmp_path / "keys" / "keyring.json").write_text('{"current": 1}')
    with pytest.raises(ConfigError, match="malformed key manifest"):
        KeyRing.load(tmp_path / "keys")


def test_unreadable_key_file(tmp_path: Path) -> None:
    ring = KeyRing.create(tmp_path / "keys")
    key_file = tmp_path / "keys" / f"{ring.kid}.key"
    key_file.unlink()
    key_file.mkdir()  # unreadable as a file even for root
    with pytest.raises(ConfigError, match="cannot read"):
        KeyRing.load(tmp_path / "keys")


def test_wide_permissions_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ring = KeyRing.create(tmp_path / "keys")
    (tmp_path / "keys" / f"{ring.kid}.key").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="bot.evidence.keys"):
        KeyRing.load(tmp_path / "keys")
    assert any("chmod 600" in r.getMessage() for r in caplog.records)


def test_rotate_keeps_old_public_keys_and_never_signs_with_them(tmp_path: Path) -> None:
    ring = KeyRing.create(tmp_path / "keys")
    old = ring.kid
    old_sig = ring.sign(b"m")
    new = ring.rotate()
    assert new != old and ring.kid == new
    assert ring.kids == (old, new)
    ring.verify(old, b"m", old_sig)  # old evidence still verifies
    ring.verify(new, b"m", ring.sign(b"m"))
    with pytest.raises(EvidenceError):
        ring.verify(old, b"m", ring.sign(b"m"))  # the new signature is not the old key's
    assert mode(tmp_path / "keys" / f"{new}.key") == 0o600

    loaded = KeyRing.load(tmp_path / "keys")
    assert loaded.kid == new
    assert loaded.kids == (old, new)
    statuses = {k["kid"]: k["status"] for k in loaded.jwks()["keys"]}
    assert statuses == {old: RETIRED, new: CURRENT}


def test_a_rotation_keeps_keys_another_ring_added_meanwhile(tmp_path: Path) -> None:
    # two processes' rings on one directory (a CLI rotation while another one runs)
    first = KeyRing.create(tmp_path / "keys")
    second = KeyRing.load(tmp_path / "keys")
    original = first.kid
    by_first = first.rotate()
    by_second = second.rotate()  # loaded before the first rotation: must not drop its key
    loaded = KeyRing.load(tmp_path / "keys")
    assert loaded.kids == (original, by_first, by_second)
    assert loaded.kid == by_second


def test_retired_private_key_may_be_deleted(tmp_path: Path) -> None:
    ring = KeyRing.create(tmp_path / "keys")
    old = ring.kid
    ring.rotate()
    (tmp_path / "keys" / f"{old}.key").unlink()
    assert old in KeyRing.load(tmp_path / "keys")


def test_jwks_shape_and_round_trip(tmp_path: Path) -> None:
    ring = KeyRing.create(tmp_path / "keys")
    ring.rotate()
    jwks = ring.jwks()
    for entry in jwks["keys"]:
        assert entry["kty"] == "OKP" and entry["crv"] == "Ed25519"
        assert entry["alg"] == "EdDSA" and entry["use"] == "sig"
        assert b64url_decode(entry["x"]) == ring.public_key(entry["kid"])
        assert "=" not in entry["x"]
    public = PublicKeys.from_jwks(json.loads(json.dumps(jwks)))
    assert public.kids == ring.kids
    assert public.current_kid == ring.kid
    public.verify(ring.kid, b"x", ring.sign(b"x"))


def test_jwks_is_readable_by_pyjwt(tmp_path: Path) -> None:
    ring = KeyRing.create(tmp_path / "keys")
    key_set = jwt.PyJWKSet.from_dict(ring.jwks())
    assert key_set[ring.kid].key_id == ring.kid
    assert key_set[ring.kid].algorithm_name == "EdDSA"


def test_from_jwks_refuses_kid_that_does_not_match_key(tmp_path: Path) -> None:
    ring = KeyRing.create(tmp_path / "keys")
    jwks = ring.jwks()
    jwks["keys"][0]["kid"] = "ed25519-0000000000000000"
    with pytest.raises(EvidenceError, match="does not match"):
        PublicKeys.from_jwks(jwks)
    with pytest.raises(EvidenceError, match="JWKS"):
        PublicKeys.from_jwks({"nope": []})
    jwks = ring.jwks()
    jwks["keys"][0]["x"] = "+/=="
    with pytest.raises(EvidenceError, match="malformed"):
        PublicKeys.from_jwks(jwks)


def test_from_jwks_skips_other_key_types() -> None:
    public = PublicKeys.from_jwks({"keys": [{"kty": "RSA", "kid": "r", "n": "x", "e": "AQAB"}]})
    assert len(public) == 0


def test_unknown_kid_and_bad_signature(tmp_path: Path) -> None:
    ring = KeyRing.create(tmp_path / "keys")
    with pytest.raises(EvidenceError, match="unknown signing key"):
        ring.public_key("ed25519-ffffffffffffffff")
    with pytest.raises(EvidenceError, match="unknown signing key"):
        ring.verify("ed25519-ffffffffffffffff", b"m", ring.sign(b"m"))
    with pytest.raises(EvidenceError, match="does not verify"):
        ring.verify(ring.kid, b"n", ring.sign(b"m"))
    with pytest.raises(EvidenceError, match="64 bytes"):
        ring.verify(ring.kid, b"m", b"short")


def test_note_verifier_key_format(tmp_path: Path) -> None:
    ring = KeyRing.create(tmp_path / "keys")
    name, key_hash, blob = ring.note_verifier_key("example.com/log").split("+", 2)
    assert name == "example.com/log"
    assert bytes.fromhex(key_hash) == note_key_hash(name, ring.current_public_key())
    assert base64.b64decode(blob) == b"\x01" + ring.current_public_key()


def test_reload_picks_up_a_rotation_made_elsewhere(tmp_path: Path) -> None:
    server = KeyRing.create(tmp_path / "keys")
    old = server.kid
    cli = KeyRing.load(tmp_path / "keys")
    new = cli.rotate()
    assert server.kid == old  # the running server has not looked yet
    assert server.reload() is True
    assert server.kid == new and old in server and new in server
    signature = server.sign(b"message")
    server.verify(new, b"message", signature)
    assert server.reload() is False  # nothing changed since
