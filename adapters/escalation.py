"""Wires the escalation timers (``bot.scheduler``) into a signoff process.

``mount(wiring)`` builds the ``Scheduler`` over the gate and returns it as a listener of new
and final requests (a decided, cancelled or expired request loses its remaining steps) and as
a job that runs while this process leads the cluster (``bot/store/leader.py``): timers rebuilt
from the store when it starts leading, stopped on shutdown or when it stops.
"""

from __future__ import annotations

from adapters.runtime import Mounted, Wiring
from bot.domain import Request
from bot.errors import ChannelError
from bot.escalation import escalate_early
from bot.ports import Undeliverable
from bot.scheduler import Scheduler
from bot.service import Gate


def mount(wiring: Wiring) -> Mounted[Scheduler]:
    """The escalation scheduler over ``wiring.gate`` (``part``: tests inspect it)."""
    scheduler = Scheduler(wiring.gate)
    return Mounted(
        scheduler,
        final_listeners=(scheduler.on_final,),
        created_listeners=(scheduler.on_created,),
        # one scheduler loop cluster-wide: the leading process's (bot/store/leader.py)
        leader_jobs=(scheduler.run,),
    )


def undeliverable_hook(gate: Gate) -> Undeliverable:
    """The channels' hook: when a card for ``group`` cannot be delivered, run the request's
    next escalation step now (``bot.escalation.escalate_early``; SPEC §8)."""

    async def hook(request: Request, group: str, error: ChannelError) -> None:
        del group, error  # the channel already logged and counted the failure
        await escalate_early(gate, request.id)

    return hook
