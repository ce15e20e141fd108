"""Runs a wired process (``adapters.main.build``) as the server: listen, run the background
jobs, reload on SIGHUP, and on SIGINT/SIGTERM drain, issue the final checkpoint and close.

Draining, in order: held long-polls answer; the listener closes and the requests being
handled finish; cards, pages and callbacks still being sent get ``adapters.main``'s
``SHUTDOWN_GRACE`` (the application's first cleanup step); only then do the adapters close
their HTTP sessions (their ``on_cleanup``).

Nothing here wires anything: what runs comes from the ``Runtime``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import signal
from collections.abc import Callable

from aiohttp import web

from adapters.main import build
from adapters.runtime import Runtime
from bot.errors import ConfigError, SignoffError
from bot.settings import Settings

log = logging.getLogger(__name__)

#: net allocations between two collections of the youngest generation (CPython's default
#: is 700). What requests in flight hold between them (64 concurrent auto-tier requests)
#: crossed 700 about every 25 requests: at saturation the collector ran ~1,000 young
#: passes, ~90 middle and ~8 full ones in 25,000 requests, over objects that reference
#: counting frees a moment later (~200 found unreachable in all), ~12 µs a request. At
#: 10,000: one young pass in 26,000 requests (``gc.callbacks`` timing after the freeze).
YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """Collect, then keep everything built so far out of the collector's scans: it lives
    as long as the process, and collections on the request path stay short (p99). The
    youngest generation is collected every ``YOUNG_THRESHOLD`` net allocations; the older
    ones keep CPython's ratios."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


async def run(
    runtime: Runtime, ready: Callable[[str], None] | None = None, *, reuse_port: bool = False
) -> None:
    settings = runtime.settings
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: reload(runtime))

    settle_heap()
    # SPEC §7: a store that does not extend the published checkpoint never starts serving.
    try:
        await runtime.checkpoints.verify_published()
    except SignoffError:
        await runtime.close()
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
        await runtime.close()
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
    await runner.cleanup()  # handlers finish, then background work, then the adapters close
    if not fatal:
        try:
            await runtime.checkpoints.current()  # a checkpoint covering everything appended
        except SignoffError as exc:
            log.warning("final checkpoint failed: %s", exc.diagnostics())
        for finish in runtime.after_final_checkpoint:
            await finish()
    await runtime.close()
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
        await run(await build(settings), ready, reuse_port=reuse_port)

    asyncio.run(main())
