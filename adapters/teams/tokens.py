"""Outbound authentication for the Bot Connector: the OAuth 2.0 client-credentials grant.

``ClientCredentials`` plugs into the Agents SDK as its ``AccessTokenProviderBase`` (through
``SingleConnection``, a ``Connections``), so the SDK's own connector clients carry the token.
It posts ``grant_type=client_credentials`` with the app id and password to the Entra token
endpoint (``teams.token_url``; by default the tenant's, or ``botframework.com`` for a
multi-tenant registration) and caches each token until a minute before it expires. This
replaces the SDK's MSAL package (a synchronous HTTP stack) with one small async call.
Tokens and the password are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
from azure.core.credentials import AccessToken
from microsoft_agents.activity import Activity
from microsoft_agents.hosting.core.authorization import (
    AccessTokenProviderBase,
    AgentAuthConfiguration,
    ClaimsIdentity,
    Connections,
)

from bot.errors import ChannelError

log = logging.getLogger(__name__)

_EARLY = 60.0  # renew this many seconds before expiry
_TIMEOUT = aiohttp.ClientTimeout(total=15)


def default_token_url(tenant_id: str | None) -> str:
    """Entra's v2 token endpoint for the app's tenant (``botframework.com`` when none)."""
    return f"https://login.microsoftonline.com/{tenant_id or 'botframework.com'}/oauth2/v2.0/token"


class _Credential:
    """``azure.core`` ``AsyncTokenCredential`` view of a provider (the SDK asks for one)."""

    def __init__(self, provider: ClientCredentials) -> None:
        self._provider = provider

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        token, expires = await self._provider.token(list(scopes))
        return AccessToken(token, int(expires))

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> _Credential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class ClientCredentials(AccessTokenProviderBase):
    """App-only tokens for the Bot Connector, cached per scope set."""

    def __init__(
        self, app_id: str, password: str, *, tenant_id: str | None, token_url: str | None = None
    ) -> None:
        self._config = AgentAuthConfiguration(
            client_id=app_id, tenant_id=tenant_id, client_secret=password
        )
        self._app_id = app_id
        self._password = password
        self.token_url = token_url or default_token_url(tenant_id)
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = asyncio.Lock()

    @property
    def configuration(self) -> AgentAuthConfiguration:
        return self._config

    async def get_access_token(
        self, resource_url: str, scopes: list[str], force_refresh: bool = False
    ) -> str:
        """Raises ``ChannelError`` when the token endpoint refuses or cannot be reached."""
        wanted = scopes or [resource_url.rstrip("/") + "/.default"]
        token, _ = await self.token(wanted, force_refresh=force_refresh)
        return token

    def get_token_credential(self) -> Any:
        return _Credential(self)

    # Flows signoff does not use (user tokens, agentic identities): refuse clearly.
    async def acquire_token_on_behalf_of(self, scopes: list[str], user_assertion: str) -> str:
        raise NotImplementedError("signoff uses app-only tokens")

    async def get_agentic_application_token(
        self, tenant_id: str, agent_app_instance_id: str
    ) -> str | None:
        raise NotImplementedError("signoff uses app-only tokens")

    async def get_agentic_instance_token(
        self, tenant_id: str, agent_app_instance_id: str
    ) -> tuple[str, str]:
        raise NotImplementedError("signoff uses app-only tokens")

    async def get_agentic_user_token(
        self, tenant_id: str, agent_app_instance_id: str, agentic_user_id: str, scopes: list[str]
    ) -> str | None:
        raise NotImplementedError("signoff uses app-only tokens")

    async def token(self, scopes: list[str], *, force_refresh: bool = False) -> tuple[str, float]:
        """(access token, expiry as a Unix time) for ``scopes``. Raises ``ChannelError``."""
        scope = " ".join(scopes)
        async with self._lock:
            cached = self._cache.get(scope)
            if cached is not None and not force_refresh and cached[1] - _EARLY > time.time():
                return cached
            fresh = await self._fetch(scope)
            self._cache[scope] = fresh
            return fresh

    async def _fetch(self, scope: str) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._app_id,
            "client_secret": self._password,
            "scope": scope,
        }
        try:
            async with (
                aiohttp.ClientSession(timeout=_TIMEOUT) as session,
                session.post(self.token_url, data=form) as response,
            ):
                body = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ChannelError(f"Teams: cannot reach the token endpoint ({exc})") from exc
        if status != 200 or not isinstance(body, dict) or "access_token" not in body:
            error = body.get("error", "") if isinstance(body, dict) else ""
            raise ChannelError(
                f"Teams: the token endpoint refused the app credentials (HTTP {status} {error}); "
                "check teams.app_id, teams.app_password and teams.tenant_id"
            )
        expires_in = float(body.get("expires_in", 3600))
        log.debug("Teams: new connector token for %s (expires in %.0fs)", scope, expires_in)
        return str(body["access_token"]), time.time() + expires_in


class SingleConnection(Connections):
    """The one app registration signoff uses, as the SDK's ``Connections``."""

    def __init__(self, provider: AccessTokenProviderBase) -> None:
        self._provider = provider

    def get_connection(self, connection_name: str) -> AccessTokenProviderBase:
        return self._provider

    def get_default_connection(self) -> AccessTokenProviderBase:
        return self._provider

    def get_token_provider(
        self, claims_identity: ClaimsIdentity, service_url: str
    ) -> AccessTokenProviderBase:
        return self._provider

    def get_token_provider_from_activity(
        self, claims_identity: ClaimsIdentity, activity: Activity
    ) -> AccessTokenProviderBase:
        return self._provider

    def get_default_connection_configuration(self) -> AgentAuthConfiguration:
        return self._provider.configuration


__all__ = ["ClientCredentials", "SingleConnection", "default_token_url"]
