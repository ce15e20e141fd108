"""Per-agent caps (SPEC §6): pending requests and concurrent long-polls.

One agent must not be able to exhaust the server for everyone else: by holding thousands of
long-polls (each a socket and a waiter) or by parking unlimited requests for humans to wade
through. Over a cap the API answers 429 with ``Retry-After`` (``RateLimited``); nothing is
recorded.

* Pending: counted by the store in the insert's own write transaction, under the log's
  append lock (``Store.insert_request(max_pending=…)``), so parallel submissions cannot slip
  past the cap nor be refused under it, in one process or across replicas; nor do an
  agent's submissions wait for each other's commits.
* Long-polls: counted in this process (a long-poll is this process's socket).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from bot.errors import RateLimited

DEFAULT_MAX_PENDING = 1000
DEFAULT_MAX_LONG_POLLS = 100
PENDING_RETRY_AFTER = 30
LONG_POLL_RETRY_AFTER = 1


def pending_cap_reached(agent_id: str, cap: int) -> RateLimited:
    """The refusal of a confirm-tier request over the agent's pending cap."""
    return RateLimited(
        f"agent {agent_id!r} has {cap} pending requests (the cap, "
        "server.max_pending_per_agent); wait for decisions or cancel some",
        retry_after=PENDING_RETRY_AFTER,
    )


@dataclass
class AgentCaps:
    max_pending: int = DEFAULT_MAX_PENDING
    max_long_polls: int = DEFAULT_MAX_LONG_POLLS
    _polls: dict[str, int] = field(default_factory=dict)

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
