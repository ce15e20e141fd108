"""Inbound authentication of Bot Framework channel tokens on ``POST /api/messages`` (SPEC §8).

The Agents SDK's ``JwtTokenValidator`` does the cryptographic checks (RS256 signature against
the published keys, expiry with 5 minutes of leeway, ``aud`` = our app id). Its issuer
allow-list also admits Entra tokens of the app's own tenant (``sts.windows.net/<tenant>/``,
``login.microsoftonline.com/<tenant>/v2.0``): any user or service principal of the customer's
tenant can mint one for our app id, and such a token names no service. So on top of the SDK we
accept exactly the token the Bot Framework channel service sends to bots
(learn.microsoft.com, "Authenticate requests from the Bot Connector service to your bot"):

* ``iss`` is exactly ``https://api.botframework.com``;
* the ``serviceurl`` claim is present and names the activity's ``serviceUrl``, so a token
  minted for one service cannot steer our replies (and our connector token) to another.

Everything else is a 401. ``teams.jwks_url`` replaces the signing-key location (tests and
private clouds).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from jwt import PyJWK, PyJWKClient, PyJWTError
from microsoft_agents.hosting.core.authorization import AgentAuthConfiguration, ClaimsIdentity
from microsoft_agents.hosting.core.authorization.jwt import JwtTokenValidator
from microsoft_agents.hosting.core.authorization.jwt.jwt_token_validator import (
    _JwkClientManager,
)

from bot.errors import NotAuthorized

log = logging.getLogger(__name__)

SERVICE_URL_CLAIM = "serviceurl"
#: the only issuer of channel tokens (Bot Framework "Connector to bot" authentication)
BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"


class _FixedKeySource(_JwkClientManager):
    """Signing keys from one configured JWKS URL, whatever the token's issuer."""

    def __init__(self, jwks_url: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._client = PyJWKClient(jwks_url)
        self._lock = threading.Lock()

    async def get_signing_key(self, jwks_uri: str, header: dict[str, Any]) -> PyJWK:
        def fetch() -> PyJWK:
            with self._lock:
                return self._client.get_signing_key(header["kid"])

        return await asyncio.to_thread(fetch)


class InboundAuth:
    """Decides who sent an activity. ``enabled=False`` (the development flag) accepts
    anything as anonymous."""

    def __init__(
        self,
        app_id: str,
        *,
        tenant_id: str | None = None,
        jwks_url: str | None = None,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.config = AgentAuthConfiguration(
            client_id=app_id, tenant_id=tenant_id, validate_issuer=True
        )
        self._validator = JwtTokenValidator(self.config)
        if jwks_url:
            # Instance attribute shadows the SDK's process-wide cache for this validator only.
            self._validator._jwk_client_manager = _FixedKeySource(jwks_url)

    async def identify(self, authorization: str | None) -> ClaimsIdentity:
        """The verified claims of the bearer token in ``authorization``.
        Raises ``NotAuthorized`` when it is missing, malformed or does not verify."""
        if not self.enabled:
            return ClaimsIdentity()
        if not authorization:
            raise NotAuthorized("Authorization header missing")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
            raise NotAuthorized("Authorization header is not a bearer token")
        try:
            claims = await self._validator.validate_token(token)
        except (PyJWTError, ValueError, KeyError) as exc:
            # The type only: messages can echo claims, and the token itself is never logged.
            log.warning("Teams: inbound token refused (%s)", type(exc).__name__)
            raise NotAuthorized("invalid token") from exc
        if claims.get_claim_value("iss") != BOT_FRAMEWORK_ISSUER:
            # A tenant-issued Entra token (or any other issuer the SDK admits) is not a
            # channel token: it proves nothing about the activity or where it came from.
            log.warning("Teams: inbound token refused (not issued by the Bot Framework)")
            raise NotAuthorized("not a Bot Framework channel token")
        claimed = claims.get_claim_value(SERVICE_URL_CLAIM)
        if not isinstance(claimed, str) or not claimed.strip():
            log.warning("Teams: inbound token refused (no serviceurl claim)")
            raise NotAuthorized("the token names no service URL")
        return claims

    def check_service_url(self, claims: ClaimsIdentity, service_url: object) -> None:
        """Raises ``NotAuthorized`` unless the token's ``serviceurl`` claim names the
        activity's ``serviceUrl`` (a missing claim or a missing ``serviceUrl`` too)."""
        if not self.enabled:
            return
        claimed = claims.get_claim_value(SERVICE_URL_CLAIM)
        if (
            not isinstance(claimed, str)
            or not isinstance(service_url, str)
            or _norm(claimed) != _norm(service_url)
        ):
            log.warning("Teams: activity serviceUrl does not match its token's serviceurl claim")
            raise NotAuthorized("serviceUrl does not match the token")


def _norm(url: object) -> str:
    return str(url).strip().rstrip("/").casefold()


__all__ = ["BOT_FRAMEWORK_ISSUER", "SERVICE_URL_CLAIM", "InboundAuth"]
