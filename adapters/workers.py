"""``signoff serve --workers N``: N server processes on one port, one store.

A small supervising parent migrates the database once, then forks N workers. Each worker is
a whole signoff server (``adapters.main``) that binds ``server.host:server.port`` with
``SO_REUSEPORT``, so the kernel spreads new connections over the workers' own listening
sockets (evenly, by connection hash, instead of waking every worker for each connection).
Only the cluster's leader runs the escalation loop (``bot/store/leader.py``); every worker
wakes its own long-polls through the store's change feed.

The parent forwards SIGTERM/SIGINT (graceful drain: every worker stops accepting, answers
what it holds and exits 0) and SIGHUP (reload). A worker that dies after it was serving is
replaced (at most one start per ``RESTART_S`` seconds); when workers fail before any of them
ever served (a bad configuration, an unreachable store) the whole server stops with exit
status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import threading
import time
from types import FrameType

from bot.errors import ConfigError, SignoffError
from bot.published import RollbackDetected
from bot.settings import Settings

log = logging.getLogger(__name__)

MAX_WORKERS = 64
_PR_SET_PDEATHSIG = 1
RESTART_S = 1.0
#: a worker's exit status when the store does not extend the published checkpoint: every
#: worker would find the same, so the whole server stops instead of restarting it
EXIT_ROLLBACK = 3


def check_workers(settings: Settings) -> None:
    """Raises ``ConfigError`` for a worker count signoff cannot run."""
    workers = settings.server.workers
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"server.workers must be from 1 to {MAX_WORKERS}, got {workers}")
    url = settings.database_url
    if workers > 1 and (url.rstrip("/") in ("sqlite:", "sqlite://") or ":memory:" in url):
        raise ConfigError("server.workers > 1 needs a database file or PostgreSQL, not memory")
    if workers > 1 and settings.server.port == 0:
        raise ConfigError("server.workers > 1 needs a fixed server.port, not 0")


def _migrate(settings: Settings) -> None:
    """Create or upgrade the schema once, before any worker starts (then no thread is left:
    forking is safe)."""
    from adapters.main import migrate

    asyncio.run(migrate(settings))


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.count = settings.server.workers
        self.children: dict[int, int] = {}  # pid -> worker index
        self.ready: set[int] = set()  # worker indexes serving now
        self.served = False  # whether any worker ever served
        self.stopping = False
        self.failed: str | None = None
        self._ready_r, self._ready_w = os.pipe()
        self._last_start = 0.0

    def run(self) -> int:
        _migrate(self.settings)
        if threading.active_count() > 1:  # pragma: no cover - a library left a thread
            log.warning("forking workers with %d threads running", threading.active_count())
        for index in range(self.count):
            self._spawn(index)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        signal.signal(signal.SIGHUP, self._forward)
        log.info("signoff: %d workers serving on port %d", self.count, self.settings.server.port)
        status = 0
        while self.children:
            try:
                pid, code = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            index = self.children.pop(pid)
            self._read_ready()
            exit_code = os.waitstatus_to_exitcode(code)
            if self.stopping:
                status = status or (1 if exit_code != 0 else 0)  # a drain that failed
                continue
            if exit_code == EXIT_ROLLBACK:
                self.failed = f"worker {index} found the log rolled back or forked"
                log.error("signoff: %s; stopping", self.failed)
                self._stop(signal.SIGTERM, None)
                continue
            if not self.served:
                self.failed = f"worker {index} failed to start (exit {exit_code})"
                log.error("signoff: %s; stopping", self.failed)
                self._stop(signal.SIGTERM, None)
                continue
            log.warning(
                "signoff: worker %d (pid %d) died (exit %d); replacing it", index, pid, exit_code
            )
            self.ready.discard(index)
            wait = self._last_start + RESTART_S - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not self.stopping:
                self._spawn(index)
        os.close(self._ready_r)
        os.close(self._ready_w)
        return 1 if self.failed else status

    def _spawn(self, index: int) -> None:
        self._last_start = time.monotonic()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(self._ready_r)
            code = _worker(self.settings, index, self._ready_w, parent)
            os._exit(code)
        self.children[pid] = index

    def _read_ready(self) -> None:
        os.set_blocking(self._ready_r, False)
        try:
            while data := os.read(self._ready_r, 64):
                self.ready.update(data)
                self.served = True
        except BlockingIOError:
            pass

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        self._read_ready()
        self.stopping = True
        self._forward(signal.SIGTERM, None)

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


def _die_with(parent: int) -> None:
    """Linux: SIGTERM this worker (a graceful drain) when the supervisor dies, even by
    ``kill -9``, so no orphaned worker keeps serving the port."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(settings: Settings, index: int, ready_fd: int, parent: int) -> int:
    from adapters.serving import serve

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    _die_with(parent)

    def ready(url: str) -> None:
        os.write(ready_fd, bytes([index]))
        log.info("worker %d (pid %d) serving %s", index, os.getpid(), url)

    try:
        serve(settings, ready, reuse_port=True)
    except RollbackDetected as exc:
        log.error("worker %d: %s", index, exc.diagnostics())
        return EXIT_ROLLBACK
    except SignoffError as exc:
        log.error("worker %d: %s", index, exc.diagnostics())
        return 1
    except BaseException:
        log.exception("worker %d crashed", index)
        return 1
    return 0


def serve_workers(settings: Settings) -> int:
    """Run ``settings.server.workers`` processes until SIGTERM/SIGINT; the exit status."""
    check_workers(settings)
    return Supervisor(settings).run()
