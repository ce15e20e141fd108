"""The Merkle log in SQL: appending attestations and reading roots and proofs.

Each append bumps the single ``log_head`` row first (``UPDATE … RETURNING``): the row lock
(PostgreSQL) or the write lock already taken by ``BEGIN IMMEDIATE`` (SQLite) serialises appends
across processes until the transaction ends, so indices are contiguous and a rolled-back
transaction leaves no gap. The new leaf and the perfect subtrees it completes go to
``log_nodes`` (``bot.evidence.merkle.completed_nodes``), so any root or proof costs one
query for its O(log n) nodes.

These are synchronous functions on a connection inside the caller's transaction;
``SqlStore`` runs them on its worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Connection, bindparam, insert, select, tuple_, update

from bot.domain import Event
from bot.errors import EvidenceError, StoreError
from bot.evidence import merkle
from bot.store.tables import HEAD_ID, LOG_ENTRIES, LOG_HEAD, LOG_NODES

T = TypeVar("T")
Key = tuple[int, int]

_BUMP = (
    update(LOG_HEAD)
    .where(LOG_HEAD.c.id == HEAD_ID)
    .values(size=LOG_HEAD.c.size + 1)
    .returning(LOG_HEAD.c.size)
)
_SIZE = select(LOG_HEAD.c.size).where(LOG_HEAD.c.id == HEAD_ID)
_NODES = select(LOG_NODES.c.level, LOG_NODES.c.idx, LOG_NODES.c.hash).where(
    tuple_(LOG_NODES.c.level, LOG_NODES.c.idx).in_(bindparam("keys", expanding=True))
)


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

    def nodes(self, size: int) -> dict[Key, bytes] | None:
        with self._lock:
            return self._nodes if self._size == size else None

    def remember(self, size: int, nodes: dict[Key, bytes]) -> None:
        with self._lock:
            self._size, self._nodes = size, nodes


def append(
    conn: Connection,
    frontier: Frontier,
    envelope: bytes,
    event: Event,
    request_id: str | None,
    created_at: datetime,
) -> tuple[int, Callable[[], None]]:
    """Append ``envelope`` as the next leaf. Returns its index and a callback that updates
    ``frontier``; call it only after the transaction commits."""
    index = int(conn.execute(_BUMP).scalar_one()) - 1
    known = frontier.nodes(index)
    if known is None:
        known = _read(conn, frontier_keys(index))
    leaf = merkle.leaf_hash(envelope)
    completed = merkle.completed_nodes(index, leaf, lambda level, idx: known[(level, idx)])
    conn.execute(
        insert(LOG_ENTRIES),
        {
            "idx": index,
            "request_id": request_id,
            "event": event.value,
            "envelope": envelope,
            "leaf_hash": leaf,
            "created_at": created_at,
        },
    )
    conn.execute(
        insert(LOG_NODES), [{"level": lv, "idx": ix, "hash": h} for lv, ix, h in completed]
    )
    everything = {**known, **{(lv, ix): h for lv, ix, h in completed}}
    new = {key: everything[key] for key in frontier_keys(index + 1)}
    return index, lambda: frontier.remember(index + 1, new)


def size(conn: Connection) -> int:
    return int(conn.execute(_SIZE).scalar_one())


def _read(conn: Connection, keys: list[Key]) -> dict[Key, bytes]:
    if not keys:
        return {}
    rows = conn.execute(_NODES, {"keys": keys}).all()
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
