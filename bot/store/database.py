"""``Database``: a migrated SQLite or PostgreSQL database, used from asyncio.

Reads run on the database's own threads: one for SQLite; for PostgreSQL ``pool_size``
(``database.pool_size``), each with an autocommit connection (one round trip a query: no
``BEGIN``/``COMMIT``). On PostgreSQL the hot reads (``fetch``: requests, votes, cards,
agents, console users and sessions) run on the event loop instead, on psycopg's async
driver with as many connections of their own, the reads of one turn of the loop in one
round trip (``bot.store.pgreads``).
Writes wait in one queue and commit in shared transactions (``bot.store.batching``), by the
engine's strategy: SQLite's on the event loop's thread (``bot.store.group.SqliteWriter``,
which keeps lock waits and checkpoints off the loop), PostgreSQL's one group at a time on
the writer's own thread and connection (``bot.store.pggroup.PgWriter``; a group that only
queues rows from the event loop, on psycopg's async driver), never queued behind reads.
Database failures come out as ``StoreError`` (one line, no password); a closed database
raises ``StoreError`` too.

``SqlStore`` builds on it; other stores inside ``bot.store`` (``UserStore``) use the public
``read``/``write``/``execute`` so they share the connections, transactions and error
handling.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ParamSpec, Self, TypeVar

from sqlalchemy import Connection, Engine, exc
from sqlalchemy.engine import URL

from bot.clock import SystemClock
from bot.errors import ConfigError, StoreError
from bot.ports import Clock
from bot.settings import DatabaseSettings
from bot.store import changes, leader, log, migrate
from bot.store.batching import WriteQueue
from bot.store.engine import PG_CONNECT_TIMEOUT_S, make_engine, parse_url, store_error
from bot.store.group import SqliteWriter
from bot.store.raw import Read
from bot.store.writer import Op

if TYPE_CHECKING:
    from bot.store.pgreads import PgReads

P = ParamSpec("P")
T = TypeVar("T")

#: PostgreSQL connections per process for reads, unless ``database.pool_size`` says
#: otherwise: the async pool of the hot reads, and as many reader threads for the rest
PG_POOL_SIZE = DatabaseSettings.pool_size
#: the largest ``database.pool_size`` (PostgreSQL's default ``max_connections`` is 100)
MAX_POOL_SIZE = 64


class Database:
    """Build with ``await open(url)``; ``await close()`` when done."""

    def __init__(
        self, engine: Engine, url: URL, clock: Clock, *, pool_size: int = PG_POOL_SIZE
    ) -> None:
        self._engine = engine
        self._url = url
        self._clock = clock
        self._frontier = log.Frontier()
        self._closed = False
        self._writes: WriteQueue
        self._pg_reads: PgReads | None = None
        if engine.dialect.name == "sqlite":
            # reads, lock waits and checkpoints
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="signoff-store")
            self._reader = engine
            self._writes = SqliteWriter(engine, url, self._pool, self._frontier, clock.now)
        else:
            # loaded only on PostgreSQL (a SQLite server never imports the driver)
            from bot.store.pggroup import PgWriter
            from bot.store.pgreads import PgReads

            self._pool = ThreadPoolExecutor(pool_size, thread_name_prefix="signoff-store")
            self._reader = make_engine(
                url, pool_size=pool_size, autocommit=True, name="signoff-reader-threads"
            )
            self._writes = PgWriter(url, self._frontier, clock.now)
            self._pg_reads = PgReads(
                url, engine.dialect, pool_size, timeout=float(PG_CONNECT_TIMEOUT_S)
            )

    @classmethod
    async def open(
        cls, url: str, *, clock: Clock | None = None, pool_size: int = PG_POOL_SIZE
    ) -> Self:
        """Connect to ``url`` (``sqlite:///PATH`` or ``postgresql+psycopg://…``) and create or
        migrate the schema to the newest revision. ``pool_size``: PostgreSQL connections for
        reads (see the module docstring). Raises ``StoreError``, ``ConfigError`` for a
        ``pool_size`` out of range."""
        if not 1 <= pool_size <= MAX_POOL_SIZE:
            raise ConfigError(
                f"database.pool_size must be from 1 to {MAX_POOL_SIZE}, got {pool_size}"
            )
        parsed = parse_url(url)
        engine = make_engine(parsed, pool_size=1)
        database = cls(engine, parsed, clock or SystemClock(), pool_size=pool_size)
        try:
            await database._run(migrate.upgrade, engine)
            if database._pg_reads is not None:
                await database._pg_reads.open()
        except BaseException:
            await database.close()
            raise
        return database

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for migrations and tools inside ``bot.store``)."""
        return self._engine

    async def ping(self) -> None:
        """Raises ``StoreError`` when the database cannot be reached."""
        await self.read(lambda conn: conn.exec_driver_sql("SELECT 1").scalar_one())

    async def watch_changes(
        self,
        on_change: changes.OnChange,
        on_live: changes.OnLive,
        interested: changes.Interested,
        on_interest: changes.Subscribe | None = None,
    ) -> None:
        """Report requests changed by other processes sharing this database until cancelled
        (``bot.store.changes``); returns at once for a private in-memory SQLite database.
        ``interested``/``on_interest``: whether anyone waits, and a way to hear when waiting
        begins (SQLite polls only while someone waits)."""
        if self._url.get_backend_name() == "postgresql":
            await changes.listen_postgres(self._url, on_change, on_live)
        elif self._url.database not in (None, "", ":memory:"):
            await changes.poll_sqlite(
                self._url.database, on_change, on_live, interested, on_interest=on_interest
            )

    async def lead(self, work: leader.Work) -> None:
        """Run ``work()`` while this process is the cluster-wide leader, until cancelled
        (``bot.store.leader``)."""
        await leader.lead(self._url, work)

    async def close(self) -> None:
        """Release every connection; later calls raise ``StoreError``. Idempotent."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await self._writes.close()
        if self._pg_reads is not None:
            await self._pg_reads.close()
        if self._reader is not self._engine:
            await loop.run_in_executor(self._pool, self._reader.dispose)
        await loop.run_in_executor(self._pool, self._engine.dispose)
        self._pool.shutdown(wait=True)

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        except RuntimeError as error:  # the executor is shut down
            raise StoreError("the store is closed") from error
        try:
            return await future
        except exc.SQLAlchemyError as error:
            raise store_error(error, self._url) from error

    def _in_read(self, fn: Callable[[Connection], T]) -> T:
        # PostgreSQL's reader engine is in autocommit, where begin() sends nothing: at READ
        # COMMITTED each statement has its own snapshot inside a transaction too, so a read
        # needs none (one round trip per statement instead of BEGIN, the query and COMMIT)
        with self._reader.connect() as conn, conn.begin():
            return fn(conn)

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` in a read transaction on a store thread (on PostgreSQL in
        autocommit: each statement sees its own snapshot, as under READ COMMITTED in a
        transaction). Raises what ``fn`` raises, or ``StoreError``."""
        return await self._run(self._in_read, fn)

    async def fetch(self, *reads: Read) -> list[Sequence[Any]]:
        """Every row of each prebuilt read (``RawQuery`` and its values), in order: on
        PostgreSQL on the event loop, in one round trip with the other reads of this turn
        of the loop (``bot.store.pgreads``); on SQLite in one read transaction on the store
        thread. Raises ``StoreError``."""
        if self._closed:
            raise StoreError("the store is closed")
        if self._pg_reads is not None:
            return list(await self._pg_reads.fetch(reads))
        return await self.read(lambda conn: [query.all(conn, values) for query, values in reads])

    async def transact(self, op: Op[T], *, queues_only: bool = False) -> T:
        """Run ``op(conn, pending)`` in a write transaction (grouped with other writes);
        attestations queued on ``pending`` are appended to the log in the same transaction.
        ``queues_only``: ``op`` executes no statement, it only queues rows on ``pending``
        (on PostgreSQL such a group saves the append lock's round trip). Raises what ``op``
        raises, or ``StoreError``."""
        return await self._writes.submit(op, queues_only=queues_only)

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` in a write transaction (see ``transact``)."""
        return await self.transact(lambda conn, _: fn(conn))

    async def execute(self, statement: Any, params: Any = None) -> None:
        """Execute one write statement in its own transaction."""
        await self.transact(lambda conn, _: conn.execute(statement, params))
