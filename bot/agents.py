"""Agent accounts, the part of ``Gate`` that is not about requests: registration with a
one-time token, authentication (with a short cache on the hot path), the suspension flag.

``Agents`` is a base of ``bot.service.Gate`` and holds no state of its own: ``Gate`` sets the
store, clock and auth cache it uses. Denying a suspended agent's pending requests is a state
change, so ``Gate.suspend_agent`` does it through the transition primitive. Must not import
``adapters`` or any chat SDK.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Mapping

from bot.domain import Agent
from bot.errors import Forbidden, NotAuthorized
from bot.ids import AuthCache, new_token, token_hash
from bot.ports import Clock, Store


class Agents:
    """Registering, authenticating, suspending and resuming agents."""

    store: Store
    clock: Clock
    auth_cache: AuthCache

    async def register_agent(
        self, agent_id: str, *, artifact_digest: str | None = None, labels: Mapping[str, str] = {}
    ) -> tuple[Agent, str]:
        """Create an agent and return it with its one-time token. Raises ``Conflict``."""
        token = new_token()
        agent = Agent(
            id=agent_id,
            token_hash=token_hash(token),
            created_at=self.clock.now(),
            artifact_digest=artifact_digest,
            labels=dict(labels),
        )
        await self.store.add_agent(agent)
        return agent, token

    async def authenticate(self, token: str) -> Agent:
        """The agent owning ``token``. Raises ``NotAuthorized`` (unknown) or ``Forbidden``.

        A successful lookup of an active agent is reused for ``auth_cache_ttl`` seconds (the
        hot path then makes no store call). Unknown tokens and suspended agents are never
        cached. ``suspend_agent``/``resume_agent`` in this process drop the agent's entries
        at once; a suspension made by another process sharing the database reaches this
        process's new requests within ``auth_cache_ttl`` (that process denies the agent's
        pending requests itself, at once).
        """
        digest = token_hash(token)
        cache = self.auth_cache
        cached = cache.get(digest)
        if cached is not None:
            return cached
        epoch = cache.epoch
        shared = cache.lookups.get(digest)
        if shared is not None:
            # another request is reading this agent: take its answer, unless it found none
            # (that request says why) or a suspend/resume came after this one began
            found = await asyncio.shield(shared)
            if found is not None and cache.epoch == epoch:
                return found
        lookup: asyncio.Future[Agent | None] = asyncio.get_running_loop().create_future()
        if shared is None:
            cache.lookups[digest] = lookup
        active: Agent | None = None
        try:
            agent = await self.store.agent_by_token_hash(digest)
            if agent is None or not hmac.compare_digest(agent.token_hash, digest):
                raise NotAuthorized("unknown agent token")
            if agent.suspended:
                raise Forbidden(f"agent {agent.id!r} is suspended")
            active = agent
        finally:
            lookup.set_result(active if cache.epoch == epoch else None)
            if cache.lookups.get(digest) is lookup:
                del cache.lookups[digest]
        cache.put(digest, agent, epoch)
        return agent

    def forget_agent(self, agent_id: str) -> None:
        """Drop cached authentications of ``agent_id`` (after a change to the agent)."""
        self.auth_cache.forget(agent_id)

    async def resume_agent(self, agent_id: str) -> Agent:
        """Lift an agent's suspension. Raises ``NotFound``."""
        return await self.set_suspended(agent_id, False)

    async def set_suspended(self, agent_id: str, suspended: bool) -> Agent:
        """Set the agent's kill switch; cached authentications of it are dropped before and
        after (a lookup racing the change never caches the old row). Raises ``NotFound``."""
        self.forget_agent(agent_id)
        try:
            return await self.store.set_agent_suspended(agent_id, suspended)
        finally:
            self.forget_agent(agent_id)

    async def list_agents(self) -> list[Agent]:
        return await self.store.list_agents()


__all__ = ["Agents"]
