"""``SqliteWriter``: the SQLite strategy of the write queue (``bot.store.batching``), which
commits its groups on the event loop's own thread. Used for SQLite only; everything here
(the loop's connection and its pragmas, lock waits, WAL checkpoints) is SQLite's tuning.

SQLite allows one writer at a time and most of a small transaction's cost is the commit, so
each transaction commits whatever accumulated while the event loop was busy: many requests
per commit under load, one when idle.

Why on the event loop and not on a worker thread: a write is mostly Python (building rows,
the Merkle nodes, SQLAlchemy's transaction calls) with short stretches inside SQLite that
release the GIL. On a worker thread every such release hands the GIL to the loop and back,
and the loop's own releases (each socket read and write, each Ed25519 signature) hand it to
the worker: measured on 2 cores, the auto tier then spent ~560 µs of CPU per request and
served ~2,100 req/s; on the loop, ~330 µs and ~2,800 req/s, at half the median latency.
What could block the loop for long is kept off it:

- Lock waits. The loop's connection has ``busy_timeout`` 0: when another process (a
  second worker, a CLI command) holds the write lock, ``BEGIN IMMEDIATE`` fails at once
  and the loop tries again after short pauses (``LOCK_RETRIES``), serving meanwhile. A
  lock held past them goes to the store's worker thread, which waits the configured
  timeout; later groups follow it there until that thread has caught up.
- Checkpoints (copying the WAL into the database file, with an fsync). The loop's
  connection never checkpoints (``wal_autocheckpoint`` 0); every ``CHECKPOINT_EVERY``
  commits one runs on the worker thread while the loop goes on serving and committing,
  its writes held back only for a short second pass (see ``_checkpoint_soon``), which also
  makes the WAL start over there, with the header fsync that comes with it (``_checkpoint``).

A loop commit itself only writes WAL frames into the page cache (``synchronous=NORMAL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from datetime import datetime

from sqlalchemy import Connection, Engine, exc
from sqlalchemy.engine import URL
from sqlalchemy.pool import StaticPool

from bot.errors import StoreError
from bot.store import log
from bot.store.batching import Queued, Settled, WriteQueue, settle
from bot.store.raw import execute_sql
from bot.store.tables import HEAD_ID
from bot.store.writer import pooled

logger = logging.getLogger(__name__)

#: loop commits between two checkpoints (a commit writes ~10-20 pages; SQLite's own
#: automatic checkpoint comes every 1,000 pages)
CHECKPOINT_EVERY = 64
#: checkpoint intervals a checkpoint's first pass may fall behind before the loop's writes
#: wait for it: the WAL stays bounded (~3 intervals of commits) when its thread is starved
CHECKPOINT_LAG = 2
#: pauses (seconds) between the loop's tries for a write lock another process holds: a
#: second worker holds it for one group commit on its loop, unless the OS parks that
#: process meanwhile. Held past them all (~60 ms; a CLI command's transaction), the group
#: waits for the lock on the worker thread, up to the busy timeout. Retrying on the loop
#: keeps the commits there: a group committed on the thread costs ~1.7x the CPU (the GIL
#: passing back and forth, see above).
LOCK_RETRIES = (0.0002, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.03)
#: half of a write that leaves the log head as it was (one transaction: +1, then -1)
_NUDGE_HEAD = "UPDATE log_head SET size = size + ? WHERE id = ?"


class SqliteWriter(WriteQueue):
    """Commits SQLite writes (see the module docstring). ``executor`` is the store's single
    worker thread; ``close`` (awaited) before the engine is disposed."""

    def __init__(
        self,
        engine: Engine,
        url: URL,
        executor: Executor,
        frontier: log.Frontier,
        clock: Callable[[], datetime],
    ) -> None:
        super().__init__(url, frontier, clock)
        self._engine = engine
        self._executor = executor
        self._scheduled = False
        self._conn: Connection | None = None  # the loop's own, kept between groups
        self._thread_work = 0  # groups handed to the worker thread and not finished yet
        # A private in-memory database is ONE connection (StaticPool) that the worker
        # thread's reads use too: its writes stay on that thread, serialised with them.
        self._loop_writes = not isinstance(engine.pool, StaticPool)
        self._commits = 0
        self._checkpointing = False
        self._checkpoint_from = 0  # self._commits when the running checkpoint began
        self._holding = False  # writes wait for the checkpoint's second pass
        self._lock_waits = 0  # tries in a row that found the write lock held elsewhere

    def _kick(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _in_progress(self) -> bool:
        return bool(self._thread_work or self._checkpointing)

    # ------------------------------------------------------------------ the loop's side

    def _drain(self) -> None:
        """Commit one group: what queued while the loop ran the callbacks before this one."""
        self._scheduled = False
        if not self._queue or self._holding:  # _checkpoint_done drains the queue
            return
        if (
            self._checkpointing
            and self._commits - self._checkpoint_from >= CHECKPOINT_LAG * CHECKPOINT_EVERY
        ):
            self._holding = True  # the checkpoint fell behind: let it catch up first
            return
        group = self._take()
        if self._thread_work or not self._loop_writes:  # e.g. the thread waits for the lock
            self._to_thread(group)
        else:
            try:
                settled = self._commit(self._connection, group, reraise=_is_busy)
            except exc.OperationalError:  # another process holds the write lock
                if self._lock_waits < len(LOCK_RETRIES):
                    self._retry_later(group)
                    return
                self._lock_waits = 0
                self._to_thread(group)  # held long (a CLI command): wait for it there
            else:
                self._lock_waits = 0
                settle(settled)
                self._commits += 1
                if self._commits % CHECKPOINT_EVERY == 0:
                    self._checkpoint_soon()
        if self._queue and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)
        self._wake_if_idle()

    def _retry_later(self, group: list[Queued]) -> None:
        """Put ``group`` back at the head of the queue and try again on the loop after the
        next pause of ``LOCK_RETRIES`` (what queues meanwhile joins the group)."""
        self._queue.extendleft(reversed(group))
        self._scheduled = True  # a _kick meanwhile must not retry at once
        asyncio.get_running_loop().call_later(LOCK_RETRIES[self._lock_waits], self._drain)
        self._lock_waits += 1

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection]:
        """The loop's connection, opened on first use and kept (a pool check-out and back
        per group is much of a small group's Python). A database error drops it; a write
        lock held elsewhere is no fault of the connection and keeps it."""
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._engine.connect().execution_options(signoff_write=True)
            driver = conn.connection.driver_connection
            if not isinstance(driver, sqlite3.Connection):  # pragma: no cover - SQLite only
                raise StoreError("group commit needs an SQLite connection")
            driver.execute("PRAGMA busy_timeout = 0")  # never wait for a lock on the loop
            driver.execute("PRAGMA wal_autocheckpoint = 0")  # checkpoints run off the loop
            self._conn = conn
        try:
            yield conn
        except exc.SQLAlchemyError as error:
            if not _is_busy(error):
                self._conn = None
                conn.invalidate()  # its pragmas must not reach the pool's other users
            raise

    # ------------------------------------------------------------------ the worker's side

    def _to_thread(self, group: list[Queued]) -> None:
        self._thread_work += 1
        loop = asyncio.get_running_loop()
        try:
            self._executor.submit(self._commit_on_thread, loop, group)
        except RuntimeError:  # the executor is shut down
            self._thread_work -= 1
            self._refuse(group)

    def _commit_on_thread(self, loop: asyncio.AbstractEventLoop, group: list[Queued]) -> None:
        settled = self._commit(pooled(self._engine), group)
        with contextlib.suppress(RuntimeError):  # a closed event loop: nobody waits any more
            loop.call_soon_threadsafe(self._thread_done, settled)

    def _thread_done(self, settled: Settled) -> None:
        self._thread_work -= 1
        settle(settled)
        self._wake_if_idle()

    def _checkpoint_soon(self) -> None:
        """A checkpoint in two passes on the worker thread. The first copies the WAL while
        the loop goes on committing. The second copies what those commits added, with the
        loop's writes held back meanwhile: then the whole WAL has been copied when the next
        write starts, and it starts the WAL over. (Without that short hold the WAL would
        never be all copied at the start of a write under steady load, and would grow
        without end; holding writes through the whole copy instead delays every request
        that arrives during it.)"""
        if self._checkpointing or self._closed:
            return
        self._checkpointing = True
        self._checkpoint_from = self._commits
        self._run_checkpoint(self._first_pass_done)

    def _run_checkpoint(
        self, then: Callable[[asyncio.Future[None]], None], *, restart: bool = False
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, self._checkpoint, restart)
        except RuntimeError:  # the executor is shut down
            self._checkpointing = self._holding = False
            self._wake_if_idle()
            return
        future.add_done_callback(then)

    def _checkpoint(self, restart: bool = False) -> None:
        """A PASSIVE checkpoint: waits for, and blocks, no other connection. With
        ``restart`` (the second pass, loop writes held) it ends with a write that changes
        nothing in the end, so that the WAL starts over here: the first write into a reused
        WAL syncs the WAL's header (SQLite, ``synchronous=NORMAL``), and that fsync belongs
        on this thread, not in the event loop's next commit. Straight on the DBAPI
        connection: the less Python this thread runs, the less it holds the GIL the loop
        needs back after each of its own system calls."""
        with self._engine.connect() as conn:
            execute_sql(conn, "PRAGMA wal_checkpoint(PASSIVE)", []).fetchall()
            if restart:
                execute_sql(conn, "BEGIN IMMEDIATE", [])
                try:
                    for step in (1, -1):  # a change and back: SQLite skips same-value writes
                        execute_sql(conn, _NUDGE_HEAD, [step, HEAD_ID])
                finally:
                    execute_sql(conn, "COMMIT", [])

    def _first_pass_done(self, future: asyncio.Future[None]) -> None:
        if _failed_checkpoint(future):
            self._checkpoint_done(future)
            return
        self._holding = True  # _drain leaves the queue alone until the second pass ends
        self._run_checkpoint(self._checkpoint_done, restart=True)

    def _checkpoint_done(self, future: asyncio.Future[None]) -> None:
        _failed_checkpoint(future)
        self._checkpointing = self._holding = False
        if self._queue and not self._scheduled:  # what queued while writes were held
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)
        self._wake_if_idle()

    # ------------------------------------------------------------------ shutdown

    async def _release(self) -> None:
        """Close the loop's connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _failed_checkpoint(future: asyncio.Future[None]) -> bool:
    error = future.exception()
    if error is not None:  # the next checkpoint tries again
        logger.warning("WAL checkpoint failed: %s", error)
    return error is not None


def _is_busy(error: exc.SQLAlchemyError) -> bool:
    """Another connection holds the lock: SQLITE_BUSY or one of its extended codes."""
    orig = error.orig if isinstance(error, exc.DBAPIError) else None
    return (
        isinstance(orig, sqlite3.OperationalError)
        and orig.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
    )
