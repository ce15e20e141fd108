"""The Merkle log in SQL: appending attestations and reading roots and proofs.

A transaction that appends first locks the single ``log_head`` row (``SELECT … FOR UPDATE``
on PostgreSQL; under SQLite ``BEGIN IMMEDIATE`` already holds the write lock), which
serialises appends across processes until it ends: indices are contiguous and a rolled-back
transaction leaves no gap. The new leaves and the perfect subtrees they complete go to
``log_nodes`` (``bot.evidence.merkle.completed_nodes``), so any root or proof costs one
query for its O(log n) nodes.

On PostgreSQL that lock costs a round trip before the transaction can write anything. A
transaction whose operations only queue rows skips it (``Pending(known=…)``, sent from the
event loop by ``bot.store.pgasync``): it numbers its leaves from the size this process last
committed (``Frontier.assumable``), and its flush (``Pending.pg_writes``) starts with the
lock as ``_LOCK_AT``, which fails when the size is no longer the assumed one (another
process appended since, or the database was restored); the transaction then rolls back
and runs again the usual way. The lock is still the transaction's first statement, so
writers take their locks in the same order as before.

These are synchronous functions on a connection inside the caller's transaction;
``SqlStore`` runs them where its writes run (``bot.store.database``).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect

from bot.domain import Event, LogEntry, utc
from bot.errors import EvidenceError, StoreError
from bot.evidence import merkle
from bot.store.raw import RawQuery, RawStatement, execute_sql
from bot.store.tables import HEAD_ID, LOG_ENTRIES, LOG_HEAD, LOG_NODES

T = TypeVar("T")
Key = tuple[int, int]
#: statements run once at ``Pending.flush`` with the values queued for them
AtFlush = Callable[[Connection, list[Any]], None]
#: the size a transaction may assume and the right edge of the tree at that size
Assumable = tuple[int, dict[Key, bytes]]
#: a PostgreSQL statement and the parameters of each of its executions
Write = tuple[str, list[dict[str, Any]]]

_SIZE = select(LOG_HEAD.c.size).where(LOG_HEAD.c.id == HEAD_ID)
_LOCK = RawStatement(_SIZE.with_for_update())
_SET_SIZE = RawStatement(
    update(LOG_HEAD).where(LOG_HEAD.c.id == HEAD_ID).values(size=bindparam("size"))
)
#: the append lock taken with an assumed size (PostgreSQL): the size, or, when it is not
#: ``start``, an error naming the actual one (SQLSTATE 22P02, ``invalid input syntax for type
#: integer: "log head moved to N"``; a cast of a constant would fail at plan time, hence the
#: column in the text)
_LOCK_AT = RawQuery(
    select(
        case(
            (LOG_HEAD.c.size == bindparam("start"), LOG_HEAD.c.size),
            else_=cast(
                literal("log head moved to ").concat(cast(LOG_HEAD.c.size, String)), Integer
            ),
        )
    )
    .where(LOG_HEAD.c.id == HEAD_ID)
    .with_for_update()
)
#: after a failed assumption, this many transactions take the lock the usual way (another
#: process is appending too: assuming would mostly fail)
ASSUME_PAUSE = 64
_INSERT_ENTRIES = RawStatement(insert(LOG_ENTRIES))
_INSERT_NODES = RawStatement(insert(LOG_NODES))


def frontier_keys(size: int) -> list[Key]:
    """The perfect subtrees on the right edge of a tree of ``size`` leaves (one per set bit):
    all an append needs to know."""
    return [(level, (size >> level) - 1) for level in range(size.bit_length()) if size >> level & 1]


class Frontier:
    """The right-edge nodes of the log at one size, cached between appends.

    Valid only for exactly that size; entries at a size never change (the log is append-only),
    so a cache left behind by a concurrent writer is detected by its size and re-read.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._size = -1
        self._nodes: dict[Key, bytes] = {}
        self._pause = 0

    def nodes(self, size: int) -> dict[Key, bytes] | None:
        with self._lock:
            return self._nodes if self._size == size else None

    def remember(self, size: int, nodes: dict[Key, bytes]) -> None:
        with self._lock:
            self._size, self._nodes = size, nodes

    def assumable(self) -> Assumable | None:
        """The size last committed here and its right edge, for a transaction to assume
        (``Pending(known=…)``); ``None`` when nothing is cached, or for the
        ``ASSUME_PAUSE`` groups after an assumption failed (``missed``)."""
        with self._lock:
            if self._pause:
                self._pause -= 1
                return None
            return (self._size, dict(self._nodes)) if self._size >= 0 else None

    def missed(self) -> None:
        """An assumed size was wrong: another writer appends too."""
        with self._lock:
            self._pause = ASSUME_PAUSE


class Pending:
    """The attestations appended by one transaction, written out by ``flush``.

    The first ``add`` (or ``lock``) takes the append lock (``SELECT … FOR UPDATE`` on
    ``log_head``; under SQLite the write lock of ``BEGIN IMMEDIATE`` is already held) and
    reads the size, so callers know each index before they write the rows that refer to
    it. With ``known`` (PostgreSQL, a batch whose operations execute no statement: the
    event loop's path, ``bot.store.pgasync``) the first ``add`` takes that size instead,
    and ``pg_writes`` starts with the lock, checked against it (``_LOCK_AT``). ``mark`` and
    ``truncate`` undo the adds of an operation rolled back to a savepoint.

    With ``batch`` (several operations sharing one transaction, none in a savepoint), an
    operation may hand a plain ``INSERT`` to ``insert_later`` instead of executing it:
    ``flush`` writes each statement's rows with one ``executemany`` before the log entries
    (one multi-row ``INSERT`` on SQLite); ``at_flush`` likewise defers a statement whose
    result nobody reads. A constraint violation then surfaces from
    ``flush`` as ``IntegrityError`` for the whole group; the caller re-runs the group with
    a savepoint per operation (``batch`` off), where each operation sees its own error.
    """

    def __init__(
        self,
        conn: Connection,
        frontier: Frontier,
        clock: Callable[[], datetime],
        *,
        batch: bool = False,
        known: Assumable | None = None,
    ):
        self._conn = conn
        self._frontier = frontier
        self._clock = clock
        self._start: int | None = None
        self._known = known  # the size to assume (Frontier.assumable), and its right edge
        self._assumed = False  # _start came from _known: pg_writes checks it under the lock
        self._rows: list[dict[str, Any]] = []
        self.batch = batch
        self._later: dict[RawStatement, list[dict[str, Any]]] = {}
        self._at_flush: dict[AtFlush, list[Any]] = {}
        self._edge: dict[Key, bytes] | None = None  # read by prepare()

    def insert_later(self, statement: RawStatement, values: dict[str, Any]) -> None:
        """Queue one row for ``statement`` (a plain ``INSERT``); only when ``batch``."""
        if not self.batch:
            raise ValueError("insert_later needs a batched transaction")
        self._later.setdefault(statement, []).append(values)

    def at_flush(self, run: AtFlush, value: Any) -> None:
        """Queue ``value`` for ``run(conn, values)``, which ``flush`` calls once with every
        value queued for it, before the log's rows (on PostgreSQL inside the pipeline with
        the ``COMMIT``: only for statements whose results nobody reads, such as the change
        feed's ``pg_notify``); only when ``batch``."""
        if not self.batch:
            raise ValueError("at_flush needs a batched transaction")
        self._at_flush.setdefault(run, []).append(value)

    def queued(self, statement: RawStatement) -> list[dict[str, Any]]:
        """The rows queued for ``statement`` by ``insert_later`` (not yet written)."""
        return self._later.get(statement, [])

    def lock(self) -> int:
        """Take the append lock (once per transaction): from here to the commit, no other
        writer of the database appends or reads under it. Returns the log's size."""
        if self._start is None:
            start = _LOCK.scalar(self._conn)
            if start is None:
                raise StoreError("the log head row is missing: the database is damaged")
            self._start = int(start)
        return self._start

    def _next_index(self) -> int:
        if self._start is None and self._known is not None:
            (self._start, self._edge), self._assumed = self._known, True
        return self.lock()

    def add(self, envelope: bytes, event: Event, request_id: str | None) -> int:
        """Queue ``envelope`` as the next leaf; returns its index."""
        index = self._next_index() + len(self._rows)
        self._rows.append(
            {
                "idx": index,
                "request_id": request_id,
                "event": str(event),
                "envelope": envelope,
                "leaf_hash": merkle.leaf_hash(envelope),
                "created_at": self._clock(),
            }
        )
        return index

    def mark(self) -> int:
        return len(self._rows)

    def truncate(self, mark: int) -> None:
        del self._rows[mark:]
        self._edge = None

    def prepare(self) -> None:
        """Read what ``flush`` needs from the database (the tree's right edge, unless the
        frontier cache has it), so that ``flush`` itself only writes."""
        if self._start is None or not self._rows or self._edge is not None:
            return
        known = self._frontier.nodes(self._start)
        self._edge = (
            dict(known) if known is not None else _read(self._conn, frontier_keys(self._start))
        )

    def flush(self) -> Callable[[], None] | None:
        """Write the queued rows, the queued entries, the tree nodes they complete and the
        new size (after ``prepare``, nothing but writes). Returns a callback that updates
        the frontier cache; call it only after the commit."""
        self.prepare()
        for statement, rows in self._later.items():
            statement.insert_many(self._conn, rows)
        self._later.clear()
        for run, values in self._at_flush.items():
            run(self._conn, values)
        self._at_flush.clear()
        if self._start is None or not self._rows or self._edge is None:
            return None
        end, completed, remember = self._complete(self._start, self._edge)
        _INSERT_ENTRIES.insert_many(self._conn, self._rows)
        _INSERT_NODES.insert_many(self._conn, completed)
        _SET_SIZE.execute(self._conn, {"size": end})
        return remember

    def _complete(
        self, start: int, nodes: dict[Key, bytes]
    ) -> tuple[int, list[dict[str, Any]], Callable[[], None]]:
        """The log's new size, the tree nodes the queued entries complete, and the callback
        that caches the new right edge (after the commit)."""
        end = start + len(self._rows)
        self._edge = None
        completed: list[dict[str, Any]] = []
        get = nodes.__getitem__
        for row in self._rows:
            for level, idx, h in merkle.completed_nodes(
                row["idx"], row["leaf_hash"], lambda lv, ix: get((lv, ix))
            ):
                nodes[(level, idx)] = h
                completed.append({"level": level, "idx": idx, "hash": h})
        edge = {key: nodes[key] for key in frontier_keys(end)}
        return end, completed, lambda: self._frontier.remember(end, edge)

    def pg_writes(self, dialect: Dialect) -> tuple[list[Write], Callable[[], None]] | None:
        """The whole flush of a transaction that assumed the log's size, as PostgreSQL
        statements and their parameters, for a caller that sends them itself (the writer's
        event-loop path, ``bot.store.pgasync``): the checked lock first, the queued rows,
        the entries, the nodes and the size; plus the callback to call after the
        ``COMMIT``. ``None`` when the transaction did not assume a size or queued a
        statement to run at the flush (``at_flush``): the caller then runs it the usual
        way."""
        if not self._assumed or self._at_flush or self._start is None or self._edge is None:
            return None
        lock = _LOCK_AT.on_pg(dialect)
        writes: list[Write] = [(lock.sql, [lock.params({"start": self._start})])]
        for statement, rows in self._later.items():
            writes.append(statement.pg_write(dialect, rows))
        end, completed, remember = self._complete(self._start, self._edge)
        writes.append(_INSERT_ENTRIES.pg_write(dialect, self._rows))
        writes.append(_INSERT_NODES.pg_write(dialect, completed))
        writes.append(_SET_SIZE.pg_write(dialect, [{"size": end}]))
        return writes, remember


def size(conn: Connection) -> int:
    return int(conn.execute(_SIZE).scalar_one())


def _nodes_query(count: int) -> RawQuery:
    """The prebuilt read of ``count`` tree nodes (an OR of equalities: SQLite answers a
    row-value IN list with a full scan). Built once per count: a replica's appends re-read
    the right edge whenever another one appended since."""
    query = _NODE_READS.get(count)
    if query is None:
        wanted = or_(
            *(
                and_(LOG_NODES.c.level == bindparam(f"l{n}"), LOG_NODES.c.idx == bindparam(f"i{n}"))
                for n in range(count)
            )
        )
        query = _NODE_READS[count] = RawQuery(
            select(LOG_NODES.c.level, LOG_NODES.c.idx, LOG_NODES.c.hash).where(wanted)
        )
    return query


_NODE_READS: dict[int, RawQuery] = {}


def _read(conn: Connection, keys: list[Key]) -> dict[Key, bytes]:
    if not keys:
        return {}
    values: dict[str, int] = {}
    for n, (level, idx) in enumerate(keys):
        values[f"l{n}"], values[f"i{n}"] = level, idx
    rows = _nodes_query(len(keys)).all(conn, values)
    found = {(row.level, row.idx): bytes(row.hash) for row in rows}
    missing = [key for key in keys if key not in found]
    if missing:
        raise StoreError(f"the log is missing tree nodes {missing[:3]}: the database is damaged")
    return found


def _prefetched(conn: Connection, compute: Callable[[merkle.NodeGetter], T]) -> T:
    """Run ``compute`` over the tree with one query: a first pass records which nodes it
    reads (the set does not depend on their hashes), a second computes from the fetched ones."""
    wanted: list[Key] = []

    def record(level: int, idx: int) -> bytes:
        wanted.append((level, idx))
        return merkle.EMPTY_ROOT

    compute(record)
    nodes = _read(conn, list(dict.fromkeys(wanted)))
    return compute(lambda level, idx: nodes[(level, idx)])


def _check_size(conn: Connection, wanted: int) -> None:
    current = size(conn)
    if wanted > current:
        raise EvidenceError(f"the log has {current} entries; tree size {wanted} does not exist")


def root(conn: Connection, tree_size: int) -> bytes:
    """Raises ``EvidenceError`` for a size beyond the log."""
    _check_size(conn, tree_size)
    return _prefetched(conn, lambda get: merkle.root(tree_size, get))


def inclusion_proof(conn: Connection, index: int, tree_size: int) -> list[bytes]:
    """Raises ``EvidenceError`` for an index or size outside the log."""
    if not 0 <= index < tree_size:
        raise EvidenceError(f"leaf index {index} is outside a tree of size {tree_size}")
    _check_size(conn, tree_size)
    return _prefetched(conn, lambda get: merkle.inclusion_proof(index, tree_size, get))


def consistency_proof(conn: Connection, old_size: int, new_size: int) -> list[bytes]:
    """Raises ``EvidenceError`` for sizes out of order or beyond the log."""
    if not 0 <= old_size <= new_size:
        raise EvidenceError(f"cannot prove consistency from size {old_size} to {new_size}")
    _check_size(conn, new_size)
    return _prefetched(conn, lambda get: merkle.consistency_proof(old_size, new_size, get))


# -- reading entries in bulk ----------------------------------------------------------------

_RANGE = (
    select(
        LOG_ENTRIES.c.idx,
        LOG_ENTRIES.c.request_id,
        LOG_ENTRIES.c.envelope,
        LOG_ENTRIES.c.leaf_hash,
        LOG_ENTRIES.c.event,
        LOG_ENTRIES.c.created_at,
    )
    .where(LOG_ENTRIES.c.idx >= bindparam("start"), LOG_ENTRIES.c.idx < bindparam("stop"))
    .order_by(LOG_ENTRIES.c.idx)
)
_RANGE_PG = RawQuery(_RANGE)


@functools.cache
def _range_on_sqlite() -> str:
    return str(_RANGE.compile(dialect=sqlite.dialect()))


def _sqlite_time(text: str) -> datetime:
    """A stored SQLite ``DATETIME`` (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC) as aware UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def entries(conn: Connection, start: int, stop: int) -> list[LogEntry]:
    """Entries with ``start <= index < stop``, in index order: ``audit verify`` reads the
    whole log through this. On the DBAPI cursor, not through SQLAlchemy's result processing
    (which cost the verifying process a fifth of its CPU); on SQLite the one datetime
    column is read from its stored text here."""
    rows: Any
    at_of: Callable[[Any], datetime]
    if conn.dialect.name == "postgresql":
        rows, at_of = _RANGE_PG.all(conn, {"start": start, "stop": stop}), utc
    else:
        rows = execute_sql(conn, _range_on_sqlite(), [start, stop]).fetchall()
        at_of = _sqlite_time
    return [LogEntry(i, r, bytes(e), bytes(h), Event(ev), at_of(at)) for i, r, e, h, ev, at in rows]
