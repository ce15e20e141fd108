"""Grants: EdDSA JWTs bound to one call, cross-checked with PyJWT."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot.domain import Request, Status
from bot.errors import EvidenceError
from bot.evidence.grant import issue_grant, verify_grant
from bot.evidence.keys import KeyRing, b64url, b64url_decode
from tests import factories

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
ISSUER = "http://127.0.0.1:8080"


def make_request(rid: str = "req-A", arguments: dict[str, Any] | None = None) -> Request:
    return factories.make_request(
        rid,
        arguments=arguments if arguments is not None else {"amount": 25000, "to": "acct-123"},
        status=Status.APPROVED,
        created_at=NOW,
    )


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing.create(tmp_path / "keys")


def check(token: str, ring: KeyRing, request: Request, **kw: Any) -> dict[str, Any]:
    binding: dict[str, Any] = {
        "request_id": request.id,
        "agent_id": request.agent_id,
        "tool": request.call.tool,
        "arguments": request.call.arguments,
    }
    binding.update(kw)
    now = binding.pop("now", NOW + timedelta(minutes=1))
    return verify_grant(token, ring, now=now, **binding)


def test_claims_and_expiry(ring: KeyRing) -> None:
    request = make_request()
    token, expires = issue_grant(request, ring, issuer=ISSUER, now=NOW)
    assert expires == NOW + timedelta(minutes=10)
    claims = check(token, ring, request, issuer=ISSUER)
    assert claims == {
        "iss": ISSUER,
        "sub": "billing-agent",
        "jti": "req-A",
        "iat": int(NOW.timestamp()),
        "exp": int(expires.timestamp()),
        "tool": "payments.transfer",
        "args_sha256": request.arguments_sha256,
        "call_sha256": request.call_sha256,
        "policy": request.policy.digest,
    }


def test_pyjwt_verifies_our_grant_with_the_published_key(ring: KeyRing) -> None:
    request = make_request()
    token, _ = issue_grant(request, ring, issuer=ISSUER, now=NOW)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "EdDSA", "typ": "JWT", "kid": ring.kid}
    key = jwt.PyJWKSet.from_dict(ring.jwks())[header["kid"]]
    claims = jwt.decode(
        token,
        key,
        algorithms=["EdDSA"],
        issuer=ISSUER,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["jti"] == request.id and claims["args_sha256"] == request.arguments_sha256


def test_we_verify_a_pyjwt_token(ring: KeyRing) -> None:
    request = make_request()
    seed = bytes.fromhex((ring.directory / f"{ring.kid}.key").read_text().strip())
    claims = {
        "iss": ISSUER,
        "sub": request.agent_id,
        "jti": request.id,
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 600,
        "tool": request.call.tool,
        "args_sha256": request.arguments_sha256,
        "call_sha256": request.call_sha256,
        "policy": request.policy.digest,
    }
    token = jwt.encode(
        claims,
        Ed25519PrivateKey.from_private_bytes(seed),
        algorithm="EdDSA",
        headers={"kid": ring.kid},
    )
    assert check(token, ring, request) == claims


def test_grant_for_request_a_cannot_execute_request_b(ring: KeyRing) -> None:
    a, b = make_request("req-A"), make_request("req-B")
    token, _ = issue_grant(a, ring, issuer=ISSUER, now=NOW)
    with pytest.raises(EvidenceError, match="different request"):
        check(token, ring, b)


def test_altered_arguments_are_refused(ring: KeyRing) -> None:
    request = make_request()
    token, _ = issue_grant(request, ring, issuer=ISSUER, now=NOW)
    with pytest.raises(EvidenceError, match="different arguments"):
        check(token, ring, request, arguments={"amount": 250000, "to": "acct-123"})


def test_other_agent_tool_issuer_refused(ring: KeyRing) -> None:
    request = make_request()
    token, _ = issue_grant(request, ring, issuer=ISSUER, now=NOW)
    with pytest.raises(EvidenceError, match="different agent"):
        check(token, ring, request, agent_id="other-agent")
    with pytest.raises(EvidenceError, match="different tool"):
        check(token, ring, request, tool="payments.refund")
    with pytest.raises(EvidenceError, match="different issuer"):
        check(token, ring, request, issuer="https://elsewhere")


def test_call_digest_is_checked(ring: KeyRing) -> None:
    request = make_request()
    forged = replace(request, call_sha256="0" * 64)
    token, _ = issue_grant(forged, ring, issuer=ISSUER, now=NOW)
    with pytest.raises(EvidenceError, match="different call"):
        check(token, ring, request)


def test_expired_grant(ring: KeyRing) -> None:
    request = make_request()
    token, expires = issue_grant(request, ring, issuer=ISSUER, now=NOW, ttl=timedelta(seconds=30))
    check(token, ring, request, now=expires - timedelta(seconds=1))
    with pytest.raises(EvidenceError, match="expired"):
        check(token, ring, request, now=expires)


def test_grant_from_the_future(ring: KeyRing) -> None:
    request = make_request()
    token, _ = issue_grant(request, ring, issuer=ISSUER, now=NOW + timedelta(minutes=5))
    with pytest.raises(EvidenceError, match="future"):
        check(token, ring, request, now=NOW)


def test_unknown_key(ring: KeyRing, tmp_path: Path) -> None:
    other = KeyRing.create(tmp_path / "other")
    request = make_request()
    token, _ = issue_grant(request, other, issuer=ISSUER, now=NOW)
    with pytest.raises(EvidenceError, match="unknown key"):
        check(token, ring, request)


def test_old_grant_still_verifies_after_rotation(ring: KeyRing) -> None:
    request = make_request()
    token, _ = issue_grant(request, ring, issuer=ISSUER, now=NOW)
    ring.rotate()
    check(token, ring, request)


def resign(token: str, ring: KeyRing, header: dict[str, Any] | None = None, **claims: Any) -> str:
    h, c, _ = token.split(".")
    head = json.loads(b64url_decode(h))
    head.update(header or {})
    body = json.loads(b64url_decode(c))
    body.update(claims)
    signing_input = f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(body).encode())}"
    return f"{signing_input}.{b64url(ring.sign(signing_input.encode()))}"


def test_tampered_claims_fail_the_signature(ring: KeyRing) -> None:
    request = make_request()
    token, _ = issue_grant(request, ring, issuer=ISSUER, now=NOW)
    h, c, s = token.split(".")
    body = json.loads(b64url_decode(c))
    body["exp"] += 3600
    with pytest.raises(EvidenceError, match="does not verify"):
        check(f"{h}.{b64url(json.dumps(body).encode())}.{s}", ring, request)


@pytest.mark.parametrize(
    ("header", "claims", "message"),
    [
        ({"alg": "none"}, {}, "not EdDSA"),
        ({"alg": "HS256"}, {}, "not EdDSA"),
        ({"crit": ["x"]}, {}, "crit"),
        ({}, {"exp": "soon"}, "integer time"),
        ({}, {"jti": None}, "'jti' is missing"),
    ],
)
def test_malformed_grants(
    ring: KeyRing, header: dict[str, Any], claims: dict[str, Any], message: str
) -> None:
    request = make_request()
    token, _ = issue_grant(request, ring, issuer=ISSUER, now=NOW)
    with pytest.raises(EvidenceError, match=message):
        check(resign(token, ring, header, **claims), ring, request)


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "!!.e30.AA", "e30.e30.AA", "x" * 9000])
def test_garbage_tokens(ring: KeyRing, token: str) -> None:
    with pytest.raises(EvidenceError):
        check(token, ring, make_request())
