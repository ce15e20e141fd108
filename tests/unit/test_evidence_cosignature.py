"""Signed-note and cosignature formats against vectors from outside this code base:

* the Go ``golang.org/x/mod/sumdb/note`` package's documented example (``ExampleSign`` /
  ``ExampleOpen``: PeterNeumann's key, text and signature line);
* the C2SP tlog-cosignature text: its example message and example cosignature line, and a
  cosignature built here step by step from the spec's wording (not through our helpers).
"""

from __future__ import annotations

import base64
import hashlib
import struct

import nacl.signing
import pytest

from bot.errors import EvidenceError
from bot.evidence.checkpoint import parse_checkpoint, verify_checkpoint
from bot.evidence.cosignature import (
    COSIGNATURE_V1,
    ED25519_NOTE,
    add_signatures,
    cosign,
    cosigned_message,
    parse_verifier_key,
    verifier_key,
    verify_cosignatures,
)
from bot.evidence.keys import PublicKeys, key_id, note_key_hash, note_verifier_key

# golang.org/x/mod/sumdb/note example_test.go
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKv"
    "qfqdngotpRZb6KE6RyyBwJnAM=\n"
)

# c2sp.org/tlog-cosignature examples
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_COSIG = (
    "\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dl"
    "rDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
)


def go_seed() -> bytes:
    blob = base64.b64decode(GO_SKEY.split("+", 4)[4])  # the key data may contain "+"
    assert blob[0] == 0x01
    return blob[1:]


def test_go_note_vector_verifier_key_round_trips() -> None:
    key = parse_verifier_key(GO_VKEY, ED25519_NOTE)
    assert key.name == "PeterNeumann" and key.key_id.hex() == "c74f20a3"
    assert key.public == bytes(nacl.signing.SigningKey(go_seed()).verify_key)
    assert key.text() == GO_VKEY
    assert note_verifier_key("PeterNeumann", key.public) == GO_VKEY
    assert note_key_hash("PeterNeumann", key.public).hex() == "c74f20a3"


def test_go_note_vector_signature_line_is_reproduced_byte_for_byte() -> None:
    signing = nacl.signing.SigningKey(go_seed())
    signature = signing.sign(GO_TEXT.encode()).signature
    blob = note_key_hash("PeterNeumann", bytes(signing.verify_key)) + signature
    assert f"\u2014 PeterNeumann {base64.b64encode(blob).decode()}\n" == GO_SIG


def test_go_note_vector_verifies_with_the_checkpoint_verifier_rules() -> None:
    """Our note parser and verifier accept Go's signed note (a three-line body is needed
    for a checkpoint, so the Go text is checked through the signature layer only)."""
    public = parse_verifier_key(GO_VKEY, ED25519_NOTE).public
    blob = base64.b64decode(GO_SIG.split(" ")[2])
    keys = PublicKeys({key_id(public): public}, key_id(public))
    keys.verify(key_id(public), GO_TEXT.encode(), blob[4:])


def test_spec_cosigned_message_is_header_time_and_body() -> None:
    assert cosigned_message(SPEC_BODY, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\n"
        b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )


def test_spec_example_cosignature_line_has_the_v1_layout() -> None:
    _, name, blob_text = SPEC_COSIG.split(" ")
    blob = base64.b64decode(blob_text)
    assert name == "witness.example.com/w1"
    assert len(blob) == 4 + 8 + 64  # key ID, u64 timestamp, Ed25519 signature
    (timestamp,) = struct.unpack(">Q", blob[4:12])
    assert timestamp == 1679315147  # the spec's "time 1679315147" example


def test_cosignature_matches_one_built_from_the_spec_wording() -> None:
    seed = bytes(range(32))
    signing = nacl.signing.SigningKey(seed)
    public = bytes(signing.verify_key)
    name, timestamp = "witness.example/w1", 1700000000
    # SHA-256(<name> || "\n" || 0x04 || public key)[:4]
    kid = hashlib.sha256(name.encode() + b"\n" + b"\x04" + public).digest()[:4]
    message = f"cosignature/v1\ntime {timestamp}\n".encode() + SPEC_BODY.encode()
    signature = signing.sign(message).signature
    expected = (
        f"\u2014 {name} "
        + base64.b64encode(kid + timestamp.to_bytes(8, "big") + signature).decode()
        + "\n"
    )
    assert cosign(SPEC_BODY, name, signing, timestamp) == expected
    vkey = verifier_key(name, public)
    assert vkey.kind == COSIGNATURE_V1 and vkey.key_id == kid
    assert vkey.text() == f"{name}+{kid.hex()}+" + base64.b64encode(b"\x04" + public).decode()


def checkpoint_note() -> tuple[str, PublicKeys]:
    log_key = nacl.signing.SigningKey(bytes(32))
    public = bytes(log_key.verify_key)
    origin = "example.com/behind-the-sofa"
    sig = log_key.sign(SPEC_BODY.encode()).signature
    note = (
        SPEC_BODY
        + "\n\u2014 "
        + origin
        + " "
        + base64.b64encode(note_key_hash(origin, public) + sig).decode()
        + "\n"
    )
    return note, PublicKeys({key_id(public): public}, key_id(public))


def test_cosigned_checkpoint_still_verifies_as_a_checkpoint_and_by_witness() -> None:
    note, log_keys = checkpoint_note()
    w1 = nacl.signing.SigningKey(bytes([1]) * 32)
    w2 = nacl.signing.SigningKey(bytes([2]) * 32)
    k1 = verifier_key("w.example/1", bytes(w1.verify_key))
    k2 = verifier_key("w.example/2", bytes(w2.verify_key))
    cosigned = add_signatures(note, [cosign(SPEC_BODY, "w.example/1", w1, 1700000000)])
    assert verify_checkpoint(cosigned, log_keys)[0] == 20852163
    assert len(parse_checkpoint(cosigned).signatures) == 2
    assert [c.name for c in verify_cosignatures(cosigned, [k1])] == ["w.example/1"]
    with pytest.raises(EvidenceError, match=r"missing: w\.example/2"):
        verify_cosignatures(cosigned, [k1, k2])
    assert len(verify_cosignatures(cosigned, [k1, k2], quorum=1)) == 1
    # a cosignature over another body does not verify
    other = SPEC_BODY.replace("20852163", "20852164")
    forged = add_signatures(note, [cosign(other, "w.example/1", w1, 1700000000)])
    with pytest.raises(EvidenceError, match="does not verify"):
        verify_cosignatures(forged, [k1])


@pytest.mark.parametrize(
    "text",
    [
        "w+00000000+" + base64.b64encode(b"\x04" + bytes(32)).decode(),  # wrong hash
        "w+abcd+AAAA",
        "no-plus-signs",
        GO_VKEY,  # a note-signer key (0x01) is not a cosignature/v1 witness key
    ],
)
def test_bad_witness_keys_are_refused(text: str) -> None:
    with pytest.raises(EvidenceError):
        parse_verifier_key(text)


def test_verifier_keys_round_trip_whatever_their_base64_holds() -> None:
    texts = [verifier_key("w.example/x", bytes([i]) * 32).text() for i in range(64)]
    assert any("+" in t.split("+", 2)[2] for t in texts)  # the case that needs care
    for text in texts:
        assert parse_verifier_key(text).text() == text
