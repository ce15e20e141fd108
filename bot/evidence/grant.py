"""Grants: EdDSA-signed JWTs (RFC 7519, RFC 8037) that authorise exactly one call (SPEC §7).

Header ``{"alg": "EdDSA", "typ": "JWT", "kid"}``; claims ``iss``, ``sub`` (agent id), ``jti``
(request id), ``iat``, ``exp`` (NumericDate seconds), ``tool``, ``args_sha256``,
``call_sha256`` and ``policy`` (policy digest). Verifiable offline with ``/v1/keys``; single use
is enforced online by ``/execution``, not here.

Errors: ``EvidenceError`` for every refusal (malformed token, unknown key, bad signature,
expired, or bound to a different request, agent, tool, arguments or issuer).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.domain import Request
from bot.errors import EvidenceError, RequestError
from bot.evidence.canonical import arguments_sha256, call_sha256, canonical_plain
from bot.evidence.keys import PublicKeys, b64url, b64url_decode
from bot.ports import Signer

DEFAULT_TTL = timedelta(minutes=10)
MAX_TOKEN = 8192
#: tolerated clock difference for ``iat`` in the future (the expiry itself gets no leeway)
CLOCK_SKEW = timedelta(seconds=60)


def _seconds(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def issue_grant(
    request: Request,
    signer: Signer,
    *,
    issuer: str,
    ttl: timedelta = DEFAULT_TTL,
    now: datetime,
) -> tuple[str, datetime]:
    """Sign a grant for ``request``; returns ``(token, expires_at)``.

    ``expires_at`` is ``now + ttl`` truncated to whole seconds (what ``exp`` says). The grant
    binds the approved arguments: an approver's edit when there is one (SPEC §7).
    """
    return sign_grant(
        request_id=request.id,
        agent_id=request.agent_id,
        tool=request.call.tool,
        arguments_sha256=request.current_sha256,
        call_sha256=request.current_call_sha256,
        policy_digest=request.policy.digest,
        signer=signer,
        issuer=issuer,
        ttl=ttl,
        now=now,
    )


@functools.lru_cache(maxsize=16)
def _header(kid: str) -> str:
    """The encoded JOSE header of a grant: the same for every grant one key signs."""
    return b64url(canonical_plain({"alg": "EdDSA", "typ": "JWT", "kid": kid}))


def sign_grant(
    *,
    request_id: str,
    agent_id: str,
    tool: str,
    arguments_sha256: str,
    call_sha256: str,
    policy_digest: str,
    signer: Signer,
    issuer: str,
    ttl: timedelta = DEFAULT_TTL,
    now: datetime,
) -> tuple[str, datetime]:
    """``issue_grant`` from the bound values themselves, for a caller that signs the grant
    before it builds the ``Request`` that carries it (the auto tier's hot path)."""
    iat = _seconds(now)
    exp = _seconds(now + ttl)
    claims = {
        "iss": issuer,
        "sub": agent_id,
        "jti": request_id,
        "iat": iat,
        "exp": exp,
        "tool": tool,
        "args_sha256": arguments_sha256,
        "call_sha256": call_sha256,
        "policy": policy_digest,
    }
    # every member is a str or an int of seconds under an ASCII literal key: the RFC 8785
    # form needs no per-node check (``canonical_plain``)
    signing_input = f"{_header(signer.kid)}.{b64url(canonical_plain(claims))}"
    signature = signer.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url(signature)}", datetime.fromtimestamp(exp, UTC)


def _segment(text: str, what: str) -> bytes:
    try:
        return b64url_decode(text)
    except ValueError:
        raise EvidenceError(f"grant {what} is not base64url") from None


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise EvidenceError(f"grant {what} is not JSON") from None
    if not isinstance(value, dict):
        raise EvidenceError(f"grant {what} is not a JSON object")
    return value


def verify_grant(
    token: str,
    keys: PublicKeys,
    *,
    now: datetime,
    request_id: str | None = None,
    agent_id: str | None = None,
    tool: str | None = None,
    arguments: Mapping[str, Any] | None = None,
    issuer: str | None = None,
) -> dict[str, Any]:
    """Verify ``token`` and its binding to the call about to run; returns the claims.

    Every binding given is checked: ``request_id`` (``jti``), ``agent_id`` (``sub``),
    ``tool``, ``arguments`` (their ``arguments_sha256`` must equal ``args_sha256``; with
    request, agent and tool also given, ``call_sha256`` is recomputed and compared) and
    ``issuer`` (``iss``).

    Raises ``EvidenceError`` naming the first reason the grant is refused.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN or token.count(".") != 2:
        raise EvidenceError("grant is not a compact JWT")
    header_b64, claims_b64, sig_b64 = token.split(".")
    header = _json_object(_segment(header_b64, "header"), "header")
    if header.get("alg") != "EdDSA":
        raise EvidenceError(f"grant algorithm {header.get('alg')!r} is not EdDSA")
    if header.get("typ", "JWT") != "JWT" or "crit" in header:
        raise EvidenceError("grant header has an unsupported typ or crit")
    kid = header.get("kid")
    if not isinstance(kid, str) or kid not in keys:
        raise EvidenceError(f"grant is signed by an unknown key {kid!r}")
    keys.check_not_revoked(kid)  # a revoked key's grants are refused, whatever their date
    keys.verify(kid, f"{header_b64}.{claims_b64}".encode("ascii"), _segment(sig_b64, "signature"))
    claims = _json_object(_segment(claims_b64, "claims"), "claims")

    for name in ("iss", "sub", "jti", "tool", "args_sha256", "call_sha256", "policy"):
        if not isinstance(claims.get(name), str):
            raise EvidenceError(f"grant claim {name!r} is missing")
    for name in ("iat", "exp"):
        if type(claims.get(name)) is not int:
            raise EvidenceError(f"grant claim {name!r} is not an integer time")
    now_s = _seconds(now)
    if now_s >= claims["exp"]:
        raise EvidenceError("grant has expired")
    if claims["iat"] > now_s + int(CLOCK_SKEW.total_seconds()):
        raise EvidenceError("grant is issued in the future")

    if issuer is not None and claims["iss"] != issuer:
        raise EvidenceError("grant was issued by a different issuer")
    if request_id is not None and claims["jti"] != request_id:
        raise EvidenceError("grant is for a different request")
    if agent_id is not None and claims["sub"] != agent_id:
        raise EvidenceError("grant is for a different agent")
    if tool is not None and claims["tool"] != tool:
        raise EvidenceError("grant is for a different tool")
    if arguments is not None:
        try:
            digest = arguments_sha256(arguments)
        except RequestError as exc:
            raise EvidenceError(f"grant arguments cannot be hashed: {exc.message}") from exc
        if digest != claims["args_sha256"]:
            raise EvidenceError("grant is for different arguments")
        if (
            request_id is not None
            and agent_id is not None
            and tool is not None
            and call_sha256(request_id, agent_id, tool, arguments) != claims["call_sha256"]
        ):
            raise EvidenceError("grant is for a different call")
    return claims


__all__ = ["CLOCK_SKEW", "DEFAULT_TTL", "MAX_TOKEN", "issue_grant", "verify_grant"]
