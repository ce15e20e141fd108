"""Wires the escalation timers (``bot.scheduler``) into a signoff process.

``mount(runtime)`` builds the ``Scheduler`` over ``runtime.gate``, registers it as a final
listener (a decided, cancelled or expired request loses its remaining steps) and as a
background task that runs while this process leads the cluster (``bot.store.leader``):
timers rebuilt from the store when it starts leading, stopped on shutdown or when it stops.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bot.domain import Request
from bot.errors import ChannelError
from bot.escalation import escalate_early
from bot.scheduler import Scheduler
from bot.service import Gate

if TYPE_CHECKING:
    from adapters.main import Runtime


def mount(runtime: Runtime) -> Scheduler:
    """Attach the escalation scheduler to ``runtime``; returns it (tests inspect it)."""
    scheduler = Scheduler(runtime.gate)
    runtime.gate.final_listeners.append(scheduler.on_final)
    runtime.gate.created_listeners.append(scheduler.on_created)
    # one scheduler loop cluster-wide: the leading process's (bot.store.leader)
    runtime.background.append(lambda: runtime.store.lead(scheduler.run))
    return scheduler


def undeliverable_hook(gate: Gate) -> Callable[[Request, str, ChannelError], Awaitable[None]]:
    """A channel hook: when a card for ``group`` cannot be delivered, run the request's next
    escalation step now (``bot.escalation.escalate_early``)."""

    async def hook(request: Request, group: str, error: ChannelError) -> None:
        del group, error  # the channel already logged and counted the failure
        await escalate_early(gate, request.id)

    return hook
