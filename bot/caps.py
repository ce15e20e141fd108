"""Per-agent caps (SPEC §6): pending requests and concurrent long-polls.

One agent must not be able to exhaust the server for everyone else: by holding thousands of
long-polls (each a socket and a waiter) or by parking unlimited requests for humans to wade
through. Over a cap the API answers 429 with ``Retry-After`` (``RateLimited``); nothing is
recorded.

* Pending: ``Store.count_pending`` (bounded by the cap), read while the agent's
  confirm-tier submissions in this process take turns from the count to the end of their
  insert, so parallel submissions in one process cannot slip past the cap nor be refused
  under it. Processes sharing a store may together overshoot by at most the submissions in
  flight in the others.
* Long-polls: counted in this process (a long-poll is this process's socket).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from bot.errors import RateLimited

DEFAULT_MAX_PENDING = 1000
DEFAULT_MAX_LONG_POLLS = 100
PENDING_RETRY_AFTER = 30
LONG_POLL_RETRY_AFTER = 1


@dataclass
class AgentCaps:
    max_pending: int = DEFAULT_MAX_PENDING
    max_long_polls: int = DEFAULT_MAX_LONG_POLLS
    _turns: dict[str, tuple[int, asyncio.Lock]] = field(default_factory=dict)
    _polls: dict[str, int] = field(default_factory=dict)

    async def reserve_pending(
        self, agent_id: str, count_pending: Callable[[str, int], Awaitable[int]]
    ) -> None:
        """Reserve room for one more pending request; ``release_pending`` after the insert
        (also when it failed). Raises ``RateLimited`` when the agent already has
        ``max_pending``.

        The agent's confirm-tier submissions in this process take turns from the count to
        the end of the insert, so the count always includes every earlier one exactly once
        (counting in-flight inserts beside the store instead counted a committed one twice
        until its submitter released it, refusing requests under the cap)."""
        users, lock = self._turns.get(agent_id, (0, None))
        if lock is None:
            lock = asyncio.Lock()
        self._turns[agent_id] = (users + 1, lock)
        try:
            await lock.acquire()
        except BaseException:
            self._leave(agent_id)
            raise
        try:
            stored = await count_pending(agent_id, self.max_pending)
            if stored >= self.max_pending:
                raise RateLimited(
                    f"agent {agent_id!r} has {self.max_pending} pending requests (the cap, "
                    "server.max_pending_per_agent); wait for decisions or cancel some",
                    retry_after=PENDING_RETRY_AFTER,
                )
        except BaseException:
            self.release_pending(agent_id)
            raise

    def release_pending(self, agent_id: str) -> None:
        """End the turn ``reserve_pending`` began."""
        _, lock = self._turns[agent_id]
        lock.release()
        self._leave(agent_id)

    def _leave(self, agent_id: str) -> None:
        users, lock = self._turns[agent_id]
        if users > 1:
            self._turns[agent_id] = (users - 1, lock)
        else:
            del self._turns[agent_id]

    @contextlib.contextmanager
    def long_poll(self, agent_id: str) -> Iterator[None]:
        """Hold one of the agent's long-poll slots. Raises ``RateLimited`` when all are taken."""
        held = self._polls.get(agent_id, 0)
        if held >= self.max_long_polls:
            raise RateLimited(
                f"agent {agent_id!r} already holds {held} long-polls (the cap, "
                "server.max_long_polls_per_agent)",
                retry_after=LONG_POLL_RETRY_AFTER,
            )
        self._polls[agent_id] = held + 1
        try:
            yield
        finally:
            left = self._polls[agent_id] - 1
            if left:
                self._polls[agent_id] = left
            else:
                del self._polls[agent_id]


__all__ = ["AgentCaps"]
