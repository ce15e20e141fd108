"""The composition root: builds concrete parts from ``Settings`` and runs the server.

This is the only module that knows every adapter. No side effects at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import gc
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from adapters.runtime import Job, Mounted, Records, Runtime, Wiring
from bot.api.app import create_api
from bot.caps import AgentCaps
from bot.checkpoints import Checkpointer
from bot.clock import SystemClock
from bot.cosigning import Cosigner, Witness
from bot.domain import Request
from bot.errors import ChannelError, ConfigError, EvidenceError, SignoffError
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


async def open_store(settings: Settings) -> SqlStore:
    return await SqlStore.open(settings.database_url)


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
        await runtime.store.close()


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
    mounted = tuple(mount(wiring) for mount in (*_configured(settings, adapters), *mounts))
    pagers = [m.pager for m in mounted if m.pager is not None]
    fanout.connect(
        channels=[m.channel for m in mounted if m.channel is not None],
        pager=pagers[0] if pagers else None,
        final_listeners=[f for m in mounted for f in m.final_listeners],
        created_listeners=[c for m in mounted for c in m.created_listeners],
    )
    app = create_api(gate, settings, checkpoints)
    background: list[Job] = []
    for part in mounted:
        app.add_routes(part.routes)
        for prefix, subapp in part.subapps:
            app.add_subapp(prefix, subapp)
        app.on_startup.extend(part.on_startup)
        app.on_cleanup.extend(part.on_cleanup)
        background += part.jobs
        background += [functools.partial(store.lead, job) for job in part.leader_jobs]
    after_final: list[Job] = []
    if settings.log.witnesses:
        cosigner = _cosigner(settings, store)
        checkpoints.on_checkpoint.append(cosigner.notify)
        background.insert(0, cosigner.run)
        after_final.append(cosigner.finish)
    if adapters:
        background.append(
            functools.partial(
                store.watch_changes, fanout.changed_elsewhere, fanout.feed_state, fanout.has_waiters
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


async def _run(
    runtime: Runtime, ready: Callable[[str], None] | None = None, *, reuse_port: bool = False
) -> None:
    settings = runtime.settings
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: reload(runtime))

    # Everything built so far lives as long as the process: keep it out of the collector's
    # scans, so that collections on the request path stay short (p99 latency).
    gc.collect()
    gc.freeze()
    # SPEC §7: a store that does not extend the published checkpoint never starts serving.
    try:
        await runtime.checkpoints.verify_published()
    except SignoffError:
        await runtime.store.close()
        raise
    fatal: list[SignoffError] = []

    def stop_on(exc: SignoffError) -> None:
        fatal.append(exc)
        stop.set()

    runtime.checkpoints.on_fatal = stop_on
    runner = web.AppRunner(runtime.app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(
        runner, settings.server.host, settings.server.port, reuse_port=reuse_port or None
    )
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        await runtime.store.close()
        where = f"{settings.server.host}:{settings.server.port}"
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"cannot listen on {where}: the port is already in use (another signoff "
                "serve?); stop it, or choose another port with --port or server.port"
            ) from None
        raise ConfigError(
            f"cannot listen on {where}: {exc.strerror or exc}; choose another address with "
            "--host/--port or server.host/server.port"
        ) from None
    tasks = [
        loop.create_task(runtime.checkpoints.run(settings.log.checkpoint_interval.total_seconds()))
    ]
    if settings.policy.watch:
        tasks.append(loop.create_task(runtime.policies.watch()))
    for start in runtime.background:
        tasks.append(loop.create_task(start()))
    url = f"http://{settings.server.host}:{settings.server.port}"
    log.info("signoff listening on %s (policy %s)", url, runtime.policies.current.digest)
    if ready is not None:
        ready(url)
    await stop.wait()
    log.info("shutting down: draining")
    # held long-polls answer now (still pending): the agent polls again, on another replica
    runtime.fanout.stop_waiting()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await runner.cleanup()
    await runtime.gate.drain()
    if not fatal:
        try:
            await runtime.checkpoints.current()  # a checkpoint covering everything appended
        except SignoffError as exc:
            log.warning("final checkpoint failed: %s", exc.diagnostics())
        for finish in runtime.after_final_checkpoint:
            await finish()
    await runtime.store.close()
    if fatal:
        raise fatal[0]


def reload(runtime: Runtime) -> None:
    """SIGHUP: load the policy files and the key ring again. A policy that fails keeps the
    old one in force; a key ring that fails to load keeps the current key."""
    runtime.policies.reload()
    try:
        runtime.keys.reload()
    except ConfigError as exc:
        log.warning(
            "key reload failed, still signing with %s: %s", runtime.keys.kid, exc.diagnostics()
        )


def serve(
    settings: Settings, ready: Callable[[str], None] | None = None, *, reuse_port: bool = False
) -> None:
    """Run until SIGINT/SIGTERM, then drain and return. ``reuse_port``: bind with
    ``SO_REUSEPORT`` (one of several workers on one port, ``adapters.workers``)."""

    async def main() -> None:
        await _run(await build(settings), ready, reuse_port=reuse_port)

    asyncio.run(main())


def configure_logging(settings: Settings) -> None:
    level = getattr(logging, settings.logging.level.upper(), logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    if settings.logging.json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _MalformedRequestFilter) for f in server_log.filters):
        server_log.addFilter(_MalformedRequestFilter())


def warn_unset_variables(settings: Settings) -> None:
    """One WARNING per configuration section that an unset ``${VAR}`` left empty (which
    switches that adapter off), naming the variables, so a typo or a forgotten ``export``
    does not go unnoticed."""
    sections: dict[str, list[tuple[str, str]]] = {}
    for key, variable in settings.unset_variables:
        sections.setdefault(key.split(".", 1)[0], []).append((key, variable))
    for section, pairs in sections.items():
        names = ", ".join(dict.fromkeys(f"${{{v}}}" for _, v in pairs))
        keys = ", ".join(dict.fromkeys(k for k, _ in pairs))
        log.warning(
            "%s is off or incomplete: %s not set in the environment (%s left empty)",
            section,
            names,
            keys,
        )


class _MalformedRequestFilter(logging.Filter):
    """aiohttp logs a request it cannot parse (bad header bytes, broken framing) as an ERROR
    with a traceback, though it answers the client 400 itself: that is the client's mistake,
    so it becomes one INFO line naming what was wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 400) < 500:
            record.msg = f"{record.getMessage()}: malformed HTTP request ({exc.message})"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.INFO
            record.levelname = "INFO"
            return logging.getLogger().isEnabledFor(logging.INFO)
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        import json

        data = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data)
