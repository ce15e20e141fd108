"""Wires the escalation timers (``bot.scheduler``) into a signoff process.

``mount(runtime)`` builds the ``Scheduler`` over ``runtime.gate``, registers it as a final
listener (a decided, cancelled or expired request loses its remaining steps) and as a
background task (timers rebuilt from the store once the server is up, stopped on shutdown).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.scheduler import Scheduler

if TYPE_CHECKING:
    from adapters.main import Runtime


def mount(runtime: Runtime) -> Scheduler:
    """Attach the escalation scheduler to ``runtime``; returns it (tests inspect it)."""
    scheduler = Scheduler(runtime.gate)
    runtime.gate.final_listeners.append(scheduler.on_final)
    runtime.background.append(scheduler.run)
    return scheduler
