"""Verify a signoff evidence bundle with nothing but the public key (README.md, "Evidence formats").

    signoff audit prove REQUEST_ID > bundle.json
    curl -s http://127.0.0.1:8080/v1/keys > keys.json        # or a key obtained out of band
    python examples/verify_offline.py bundle.json keys.json

Uses only the standard library and PyNaCl (for Ed25519); it does not import signoff, so it
doubles as an independent check of the formats: DSSE v1 PAE, in-toto Statement v1,
RFC 6962 leaf hashing and inclusion proofs (RFC 9162 §2.1.3.2), and the C2SP signed note.

An approval of a ``step_up: webauthn`` rule also carries the approver's WebAuthn assertion;
it is checked too (with ``py_webauthn``'s COSE helpers, imported only then): the client data
is a ``webauthn.get`` for the recorded origin whose challenge is SHA-256(call_sha256 ‖ nonce)
of the statement's own call, and the signature over authenticatorData ‖ SHA-256(clientData)
verifies with the public key recorded beside it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_keys(jwks: dict[str, Any]) -> dict[str, bytes]:
    return {k["kid"]: b64url(k["x"]) for k in jwks["keys"] if k.get("crv") == "Ed25519"}


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def verify_envelope(envelope: dict[str, Any], keys: dict[str, bytes]) -> dict[str, Any]:
    payload = base64.b64decode(envelope["payload"])
    for sig in envelope["signatures"]:
        key = keys.get(sig["keyid"])
        if key is None:
            continue
        try:
            VerifyKey(key).verify(
                pae(envelope["payloadType"], payload), base64.b64decode(sig["sig"])
            )
        except BadSignatureError:
            raise SystemExit(f"bad DSSE signature by {sig['keyid']}") from None
        return dict(json.loads(payload))
    raise SystemExit("no signature by a trusted key")


def leaf_hash(envelope: dict[str, Any]) -> bytes:
    # The envelope holds only ASCII strings, so sorted compact JSON is its RFC 8785 form.
    canonical = json.dumps(envelope, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(b"\x00" + canonical).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2."""
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise SystemExit("inclusion proof too long")
        if fn & 1 or fn == sn:
            r = node(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise SystemExit("inclusion proof too short")
    return r


def verify_checkpoint(note: str, keys: dict[str, bytes]) -> tuple[int, bytes]:
    """C2SP signed note: body, blank line, '— name base64(keyhash4 || sig64)'."""
    body, _, sigs = note.partition("\n\n")
    body += "\n"
    origin, size, root = body.splitlines()[:3]
    for line in sigs.splitlines():
        _, name, blob = line.split(" ")
        raw = base64.b64decode(blob)
        for key in keys.values():
            key_hash = hashlib.sha256(name.encode() + b"\n\x01" + key).digest()[:4]
            if raw[:4] == key_hash:
                try:
                    VerifyKey(key).verify(body.encode(), raw[4:])
                except BadSignatureError:
                    raise SystemExit("bad checkpoint signature") from None
                return int(size), base64.b64decode(root)
    raise SystemExit(f"checkpoint for {origin} has no signature by a trusted key")


def verify_step_up(step_up: dict[str, Any], call: str) -> None:
    """Check a WebAuthn assertion recorded in an approval (raises ``SystemExit``)."""
    from cryptography.exceptions import InvalidSignature
    from webauthn.helpers import decode_credential_public_key
    from webauthn.helpers.decoded_public_key_to_cryptography import (
        decoded_public_key_to_cryptography,
    )
    from webauthn.helpers.verify_signature import verify_signature

    if step_up.get("call_sha256") != call:
        raise SystemExit("the security key signed another call than this statement's")
    client_data = b64url(step_up["client_data_json"])
    parsed = json.loads(client_data)
    nonce = b64url(step_up["nonce"])
    challenge = hashlib.sha256(bytes.fromhex(call) + nonce).digest()
    if parsed.get("type") != "webauthn.get" or b64url(parsed.get("challenge", "")) != challenge:
        raise SystemExit("the WebAuthn assertion's challenge is not bound to this call")
    if parsed.get("origin") != step_up["origin"]:
        raise SystemExit("the WebAuthn assertion comes from another origin")
    auth_data = b64url(step_up["authenticator_data"])
    if auth_data[:32] != hashlib.sha256(step_up["rp_id"].encode()).digest():
        raise SystemExit("the WebAuthn assertion is for another relying party")
    decoded = decode_credential_public_key(b64url(step_up["public_key"]))
    try:
        verify_signature(
            public_key=decoded_public_key_to_cryptography(decoded),
            signature_alg=decoded.alg,
            signature=b64url(step_up["signature"]),
            data=auth_data + hashlib.sha256(client_data).digest(),
        )
    except InvalidSignature:
        raise SystemExit("the WebAuthn assertion's signature does not verify") from None


def main(bundle_path: str, keys_path: str) -> None:
    with open(bundle_path, encoding="utf-8") as fh:
        bundle = json.load(fh)
    with open(keys_path, encoding="utf-8") as fh:
        keys = load_keys(json.load(fh))
    for entry in bundle["entries"]:
        statement = verify_envelope(entry["envelope"], keys)
        size, root = verify_checkpoint(entry["checkpoint"], keys)
        proof = [base64.b64decode(h) for h in entry["inclusion_proof"]["hashes"]]
        if root_from_inclusion(leaf_hash(entry["envelope"]), entry["index"], size, proof) != root:
            raise SystemExit(f"entry {entry['index']} is not in the signed tree")
        predicate = statement["predicate"]
        step_up = (predicate.get("approver") or {}).get("step_up")
        if step_up is not None:
            # the call approved: an approver's edit of it, else the statement's subject
            edit = predicate.get("edit") or {}
            call = edit.get("call_sha256") or statement["subject"][0]["digest"]["sha256"]
            verify_step_up(step_up, call)
            print(
                f"entry {entry['index']}: approved with security key "
                f"{step_up['credential_id'][:16]}… (WebAuthn assertion verified)"
            )
        print(
            f"entry {entry['index']}: {predicate['decision']} verified "
            f"(subject sha256 {statement['subject'][0]['digest']['sha256'][:16]}…, "
            f"tree size {size})"
        )
    print("bundle verified with the public key alone")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
