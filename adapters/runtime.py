"""What a signoff process runs (``Runtime``), what an adapter's ``mount`` is given
(``Wiring``) and what it gives back (``Mounted``).

An adapter never changes the process it is mounted in: its ``mount(wiring)`` returns a
``Mounted`` naming its routes, its approval channel or pager, its listeners, its background
jobs and its start/stop hooks, and the composition root (``adapters.main``) puts them in
place, once. This module imports no adapter, so every adapter may import it (no circle:
``adapters.main`` imports the adapters, never the other way round).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiohttp import web

from bot.accounts import Passkeys, UserAdmin, Users
from bot.checkpoints import Checkpointer
from bot.errors import StoreError
from bot.evidence.keys import KeyRing
from bot.fanout import CreatedListener, Fanout, FinalListener
from bot.policy.holder import PolicyHolder
from bot.ports import ApprovalChannel, Pager, Routes, Store, Undeliverable
from bot.service import Gate
from bot.settings import Settings

#: a background job: started when the server starts serving, cancelled when it stops
Job = Callable[[], Coroutine[Any, Any, Any]]
#: an aiohttp ``on_startup`` / ``on_cleanup`` signal handler
Hook = Callable[[web.Application], Awaitable[None]]
T = TypeVar("T")

log = logging.getLogger(__name__)


async def repeat(work: Job, every: float, what: str) -> None:
    """Run ``work()`` now and then ``every`` seconds after each run ends, for ever (a
    background job). A failure of one run is logged (a store it cannot reach: one line) and
    the next run comes as usual."""
    while True:
        try:
            await work()
        except StoreError as exc:
            log.warning("%s failed: %s; trying again", what, exc)
        except Exception:  # a bug must not end the job for the process's life
            log.exception("%s failed; trying again", what)
        await asyncio.sleep(every)


@dataclass(frozen=True)
class Wiring:
    """What a ``mount`` may use: the gate and the few stores an adapter keeps of its own."""

    settings: Settings
    gate: Gate
    checkpoints: Checkpointer
    users: Users
    passkeys: Passkeys
    routes: Routes
    #: every card-posting channel reports a card it could not deliver here (SPEC §8)
    undeliverable: Undeliverable


@dataclass(frozen=True)
class Mounted(Generic[T]):
    """What one adapter adds to the process. ``part`` is the adapter itself (tests reach it
    there); everything else is put in place by the composition root."""

    part: T
    routes: tuple[web.AbstractRouteDef, ...] = ()
    subapps: tuple[tuple[str, web.Application], ...] = ()
    channel: ApprovalChannel | None = None
    pager: Pager | None = None
    final_listeners: tuple[FinalListener, ...] = ()
    created_listeners: tuple[CreatedListener, ...] = ()
    #: run while the process serves
    jobs: tuple[Job, ...] = ()
    #: run while the process serves and leads the cluster (``bot/store/leader.py``)
    leader_jobs: tuple[Job, ...] = ()
    on_startup: tuple[Hook, ...] = ()
    on_cleanup: tuple[Hook, ...] = ()


@dataclass(frozen=True)
class Records:
    """What the commands that run no gate use (``signoff users``, ``signoff report``), straight
    from the database, with no policy or key loaded: console users, and the requests with
    their votes."""

    users: UserAdmin
    requests: Store


@dataclass
class Runtime:
    """Everything one signoff process runs, wired together (``adapters.main.build``)."""

    settings: Settings
    store: Store
    keys: KeyRing
    policies: PolicyHolder
    gate: Gate
    fanout: Fanout
    checkpoints: Checkpointer
    app: web.Application
    #: what the adapters were given
    wiring: Wiring
    #: console users as the ``signoff users`` commands manage them
    users: UserAdmin
    #: closes the store: the last thing the process does
    close: Job
    #: what each adapter added, in mount order
    mounted: tuple[Mounted[Any], ...] = ()
    background: tuple[Job, ...] = ()
    #: run after the final checkpoint, before the store closes (e.g. its last cosigning)
    after_final_checkpoint: tuple[Job, ...] = ()

    def part(self, kind: type[T]) -> T:
        """The mounted adapter part of type ``kind`` (e.g. ``SlackAdapter``). Raises
        ``LookupError`` when no adapter of that type is mounted."""
        for mounted in self.mounted:
            if isinstance(mounted.part, kind):
                return mounted.part
        raise LookupError(f"no {kind.__name__} is mounted")
