"""Step-up cost (issue 17): the server-side work a security-key approval adds is one WebAuthn
assertion check (``py_webauthn``'s ``verify_authentication_response``: parse, challenge,
origin, RP ID hash, flags, ES256 signature). Target ≤ 1 ms.

Run: .venv/bin/python bench/step_up.py [--rounds 2000]

Builds a real ES256 credential and assertion in this process (what an authenticator would
send), with the challenge signoff uses (SHA-256(call_sha256 ‖ nonce)), and times the check.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import struct
import sys
import time
from pathlib import Path

import cbor2
import webauthn
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import bytes_to_base64url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.console.stepup import challenge_for

RP_ID, ORIGIN = "signoff.example", "https://signoff.example"


def main(rounds: int) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    cose = cbor2.dumps(
        {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
    )
    call_sha256 = secrets.token_hex(32)
    nonce = secrets.token_bytes(16)
    challenge = challenge_for(call_sha256, nonce)
    client_data = json.dumps(
        {"type": "webauthn.get", "challenge": bytes_to_base64url(challenge), "origin": ORIGIN}
    ).encode()
    auth_data = hashlib.sha256(RP_ID.encode()).digest() + bytes([0x05]) + struct.pack(">I", 1)
    signature = key.sign(
        auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
    )
    credential_id = bytes_to_base64url(secrets.token_bytes(16))
    assertion = json.dumps(
        {
            "id": credential_id,
            "rawId": credential_id,
            "type": "public-key",
            "response": {
                "clientDataJSON": bytes_to_base64url(client_data),
                "authenticatorData": bytes_to_base64url(auth_data),
                "signature": bytes_to_base64url(signature),
            },
            "clientExtensionResults": {},
        }
    )
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        webauthn.verify_authentication_response(
            credential=assertion,
            expected_challenge=challenge_for(call_sha256, nonce),
            expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
            credential_public_key=cose,
            credential_current_sign_count=0,
        )
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    load = os.getloadavg()[0]
    print(
        f"step-up assertion check ({rounds} rounds, load {load:.1f} on {os.cpu_count()} cores): "
        f"p50 {samples[len(samples) // 2]:.3f} ms, p99 {samples[int(len(samples) * 0.99)]:.3f} ms "
        "(target <= 1 ms)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2000)
    main(parser.parse_args().rounds)
