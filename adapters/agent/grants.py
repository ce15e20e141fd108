"""Offline grant verification on the agent side (SPEC §7 "Grant").

Before a tool function runs, its grant is checked here against the exact call about to
run -- tool, arguments (``args_sha256``), request, agent (``call_sha256``), expiry and the
signature -- with the server's public keys from ``/v1/keys``. The key set is cached for
``ttl`` seconds and refetched at once when a grant names a key it has not seen (rotation).
Single use is enforced online by ``POST /execution`` (``started``), not here.

Raises ``GrantRefused`` (does not verify) and ``Unavailable`` (keys cannot be fetched).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from adapters.agent.errors import GrantRefused, Unavailable
from adapters.agent.state import RequestState
from adapters.agent.steps import Awaiting, Blocking, Operation, Steps, invoke
from bot.errors import EvidenceError
from bot.evidence.grant import verify_grant
from bot.evidence.keys import PublicKeys, b64url_decode

Now = Callable[[], datetime]
DEFAULT_TTL = 300.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


def grant_kid(token: str) -> str | None:
    """The ``kid`` in a grant's header, or None when the token is malformed."""
    try:
        header = json.loads(b64url_decode(token.split(".", 1)[0]))
    except (ValueError, IndexError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


def check_grant(
    state: RequestState,
    tool: str,
    arguments: Mapping[str, Any],
    keys: PublicKeys,
    *,
    now: datetime,
    issuer: str | None = None,
) -> dict[str, Any]:
    """Verify ``state.grant`` for running ``tool`` with ``arguments``; returns the claims.
    Raises ``GrantRefused`` naming the first reason."""
    if state.grant is None:
        raise GrantRefused(tool, "the request carries no grant", request_id=state.id)
    try:
        return verify_grant(
            state.grant,
            keys,
            now=now,
            request_id=state.id,
            agent_id=state.agent_id,
            tool=tool,
            arguments=arguments,
            issuer=issuer,
        )
    except EvidenceError as exc:
        raise GrantRefused(tool, exc.message, request_id=state.id) from exc


class KeyCache:
    """The key set last fetched and when (pure state): fresh for ``ttl`` seconds, and only
    while it holds the key a grant names (a rotation refetches at once)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.keys: PublicKeys | None = None
        self.fetched = 0.0

    def fresh(self, kid: str | None) -> PublicKeys | None:
        keys = self.keys
        if keys is None or time.monotonic() - self.fetched > self.ttl:
            return None
        if kid is not None and kid not in keys:
            return None
        return keys

    def keep(self, jwks: Mapping[str, Any]) -> PublicKeys:
        """Parse and remember a fetched JWKS. Raises ``Unavailable`` when it is malformed."""
        try:
            keys = PublicKeys.from_jwks(jwks)
        except EvidenceError as exc:
            raise Unavailable(f"the key set from /v1/keys is malformed: {exc.message}") from exc
        self.keys, self.fetched = keys, time.monotonic()
        return keys


def _verify(
    verifier: _Verifier[Any], state: RequestState, tool: str, arguments: Mapping[str, Any]
) -> Steps[dict[str, Any]]:
    """Raises ``GrantRefused`` unless the grant covers exactly this call."""
    keys = yield invoke(verifier.keys, grant_kid(state.grant) if state.grant else None)
    return verifier.check(state, tool, arguments, keys)


Fetch = TypeVar("Fetch", bound=Callable[[], Any])


class _Verifier(Generic[Fetch]):
    """What both verifiers share; shells implement ``keys`` (fetch under their own lock)."""

    _lock: Callable[[], Any] = threading.Lock

    def __init__(
        self,
        fetch: Fetch,
        *,
        ttl: float = DEFAULT_TTL,
        now: Now = _utcnow,
        issuer: str | None = None,
    ) -> None:
        self._fetch = fetch
        self._cache = KeyCache(ttl)
        self._fetching = self._lock()
        self._now = now
        self.issuer = issuer

    def keys(self, kid: str | None = None) -> Any:
        raise NotImplementedError

    def check(
        self, state: RequestState, tool: str, arguments: Mapping[str, Any], keys: PublicKeys
    ) -> dict[str, Any]:
        return check_grant(state, tool, arguments, keys, now=self._now(), issuer=self.issuer)

    verify = Operation(_verify)


class AsyncGrantVerifier(Awaiting, _Verifier[Callable[[], Awaitable[Mapping[str, Any]]]]):
    """Verifies grants with a JWKS fetched by ``fetch`` (e.g. ``AsyncSignoff.jwks``)."""

    _lock = asyncio.Lock

    async def keys(self, kid: str | None = None) -> PublicKeys:
        """The cached key set, refetched when stale or missing ``kid``."""
        keys = self._cache.fresh(kid)
        if keys is None:
            async with self._fetching:
                keys = self._cache.fresh(kid)
                if keys is None:
                    keys = self._cache.keep(await self._fetch())
        return keys


class GrantVerifier(Blocking, _Verifier[Callable[[], Mapping[str, Any]]]):
    """Synchronous twin of ``AsyncGrantVerifier`` (e.g. with ``Signoff.jwks``)."""

    def keys(self, kid: str | None = None) -> PublicKeys:
        """The cached key set, refetched when stale or missing ``kid``."""
        with self._fetching:
            keys = self._cache.fresh(kid)
            return keys if keys is not None else self._cache.keep(self._fetch())


__all__ = ["AsyncGrantVerifier", "GrantVerifier", "KeyCache", "check_grant", "grant_kid"]
