"""The composition root: builds concrete parts from ``Settings`` and wires them together.

This is the only module that knows every adapter, and the only one outside ``bot/`` that
opens the store: the server (``build``, run by ``adapters.serving``) and the commands
(``running``, ``records``, ``migrate``) get what they use from here. No side effects at
import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from adapters.runtime import Job, Mounted, Records, Runtime, Wiring, repeat
from bot.api.app import create_api
from bot.caps import AgentCaps
from bot.checkpoints import Checkpointer
from bot.clock import SystemClock
from bot.cosigning import Cosigner, Witness
from bot.domain import Request
from bot.errors import ChannelError, ConfigError, EvidenceError
from bot.evidence.bundle import (
    default_signature_path,
    load_trusted_keys,
    read_envelope,
    verify_bundle,
)
from bot.evidence.keys import KeyRing
from bot.fanout import Fanout
from bot.policy.holder import PolicyHolder
from bot.policy.model import Policy
from bot.ports import Clock, Undeliverable
from bot.service import Gate
from bot.settings import Settings
from bot.store import PasskeyStore, RouteStore, SqlStore, UserStore

log = logging.getLogger(__name__)

#: seconds a stopping server gives the cards, pages and callbacks still being sent
SHUTDOWN_GRACE = 10.0
#: how often each process looks for new requests whose cards a stopped process still owed
ANNOUNCE_EVERY = 5.0


async def open_store(settings: Settings) -> SqlStore:
    return await SqlStore.open(settings.database_url, pool_size=settings.database.pool_size)


async def migrate(settings: Settings) -> None:
    """Create or upgrade the database schema, then let go of it (``signoff serve --workers``
    does this once, before any worker starts). Raises ``StoreError``."""
    store = await open_store(settings)
    await store.close()


@contextlib.asynccontextmanager
async def records(settings: Settings) -> AsyncIterator[Records]:
    """The database for one command that needs no gate; closed on exit. Raises
    ``StoreError``."""
    store = await open_store(settings)
    try:
        yield Records(UserStore(store), store)
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def running(settings: Settings, *, adapters: bool = False) -> AsyncIterator[Runtime]:
    """The process wired for one command (``build``); on exit its background work is waited
    for (with ``adapters``, cards updated) and the store closed. Raises what ``build``
    raises."""
    runtime = await build(settings, adapters=adapters)
    try:
        yield runtime
    finally:
        await runtime.gate.drain()
        await runtime.close()


def load_keys(settings: Settings) -> KeyRing:
    return KeyRing.load(settings.path(settings.keys.dir))


def load_policies(settings: Settings) -> PolicyHolder:
    """The policy in force. With ``policy.trusted_keys`` only a bundle whose signature
    verifies loads (``bot.evidence.bundle``); raises ``PolicyError``/``EvidenceError``/
    ``ConfigError`` when it does not (the server refuses to start)."""
    paths = [settings.path(p) for p in settings.policy.paths]
    if not settings.policy.trusted_keys:
        return PolicyHolder(paths)
    trusted = load_trusted_keys([settings.path(p) for p in settings.policy.trusted_keys])
    signature = (
        settings.path(settings.policy.signature)
        if settings.policy.signature
        else default_signature_path(paths)
    )

    def verify(policy: Policy) -> str:
        return verify_bundle(read_envelope(signature), policy.digest, trusted)

    return PolicyHolder(paths, verify=verify, also_watch=(signature,))


#: an adapter's ``mount``: what it adds, given the wiring (``adapters.runtime``)
Mount = Callable[[Wiring], Mounted[Any]]


def _together(jobs: Sequence[Job]) -> Job:
    """One job running ``jobs`` side by side (one failing cancels the others)."""
    if len(jobs) == 1:
        return jobs[0]

    async def run() -> None:
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(job())

    return run


async def build(
    settings: Settings,
    *,
    clock: Clock | None = None,
    adapters: bool = True,
    mounts: Sequence[Mount] = (),
) -> Runtime:
    """Wire the store, keys, policy, service, API and every configured adapter (call inside
    a running event loop), then ``mounts`` (tests add adapters with test options this way).
    With ``adapters=False`` only the core is wired (CLI commands that touch the store), and
    an undeliverable card escalates nothing. Raises ``ConfigError``/``PolicyError``/
    ``StoreError``."""
    clock = clock or SystemClock()
    keys = load_keys(settings)
    policies = load_policies(settings)
    store = await open_store(settings)
    fanout = Fanout()
    gate = Gate(
        store=store,
        policies=policies,
        keys=keys,
        clock=clock,
        fanout=fanout,
        grant_ttl=settings.grants.ttl,
        issuer=settings.grants.issuer or settings.server.public_url,
        caps=AgentCaps(
            max_pending=settings.server.max_pending_per_agent,
            max_long_polls=settings.server.max_long_polls_per_agent,
        ),
    )
    policies.on_failure = lambda exc: gate.metrics.policy_reload_failures.labels(
        "signature" if isinstance(exc, EvidenceError | ConfigError) else "invalid"
    ).inc()
    publish = settings.path(settings.log.publish_file) if settings.log.publish_file else None
    checkpoints = Checkpointer(store, keys, clock, origin=settings.log.origin, publish_file=publish)
    users = UserStore(store)
    wiring = Wiring(
        settings,
        gate,
        checkpoints,
        users=users,
        passkeys=PasskeyStore(store),
        routes=RouteStore(store),
        undeliverable=_escalate_early(gate) if adapters else _unheard,
    )
    try:
        mounted = tuple(mount(wiring) for mount in (*_configured(settings, adapters), *mounts))
    except BaseException:
        await store.close()  # an adapter refused its settings: nothing runs
        raise
    pagers = [m.pager for m in mounted if m.pager is not None]
    fanout.connect(
        channels=[m.channel for m in mounted if m.channel is not None],
        pager=pagers[0] if pagers else None,
        final_listeners=[f for m in mounted for f in m.final_listeners],
        created_listeners=[c for m in mounted for c in m.created_listeners],
    )
    app = create_api(gate, settings, checkpoints)

    async def finish_background(_: Any) -> None:
        # The application's first cleanup step: after the last handler returned, before the
        # adapters' own steps close the HTTP sessions cards, pages and callbacks go out on.
        await gate.drain(SHUTDOWN_GRACE, cancel=True)

    app.on_cleanup.append(finish_background)
    background: list[Job] = []
    leader_jobs: list[Job] = []
    for part in mounted:
        app.add_routes(part.routes)
        for prefix, subapp in part.subapps:
            app.add_subapp(prefix, subapp)
        app.on_startup.extend(part.on_startup)
        app.on_cleanup.extend(part.on_cleanup)
        background += part.jobs
        leader_jobs += part.leader_jobs
    if leader_jobs:
        # one leadership for them all: a second bid for the lock would wait on this process
        background.append(functools.partial(store.lead, _together(leader_jobs)))
    after_final: list[Job] = []
    if settings.log.witnesses:
        cosigner = _cosigner(settings, store)
        checkpoints.on_checkpoint.append(cosigner.notify)
        background.insert(0, cosigner.run)
        after_final.append(cosigner.finish)
    if adapters:
        # every process looks; ``Gate.announce_owed`` gives each request to one
        background.append(
            functools.partial(repeat, gate.announce_owed, ANNOUNCE_EVERY, "announcing cards owed")
        )
        background.append(
            functools.partial(
                store.watch_changes,
                fanout.changed_elsewhere,
                fanout.feed_state,
                fanout.has_waiters,
                fanout.on_interest,
            )
        )
    return Runtime(
        settings,
        store,
        keys,
        policies,
        gate,
        fanout,
        checkpoints,
        app,
        wiring,
        users,
        store.close,
        mounted=mounted,
        background=tuple(background),
        after_final_checkpoint=tuple(after_final),
    )


def _cosigner(settings: Settings, store: SqlStore) -> Cosigner:
    """SPEC §7: checkpoints go to the witnesses from a background task, beside the log."""
    log_settings = settings.log
    return Cosigner(
        store,
        [Witness.from_settings(w) for w in log_settings.witnesses],
        quorum=log_settings.witness_quorum,
        timeout=log_settings.witness_timeout.total_seconds(),
    )


def _configured(settings: Settings, adapters: bool) -> list[Mount]:
    """The mounts of the adapters ``settings`` turns on (SPEC §4), imported only then (a
    command that needs no Slack does not load its SDK)."""
    if not adapters:
        return []
    found: list[Mount] = []
    if settings.pagerduty.routing_key:
        from adapters import pagerduty

        found.append(pagerduty.mount)
    if settings.slack_enabled:
        from adapters import slack

        found.append(slack.mount)
    if settings.teams_enabled:
        from adapters import teams

        found.append(teams.mount)
    if settings.email_enabled:
        from adapters import email

        found.append(email.mount)
    if settings.console.enabled:
        from adapters import console

        found.append(console.mount)
    from adapters import callbacks, escalation

    found += [escalation.mount, callbacks.mount]
    return found


def _escalate_early(gate: Gate) -> Undeliverable:
    from adapters.escalation import undeliverable_hook

    return undeliverable_hook(gate)


async def _unheard(request: Request, group: str, error: ChannelError) -> None:
    """No escalation wired (``adapters=False``): the channel's own log line is all."""
    del request, group, error
