"""Offline verification of the whole log (``signoff audit verify``) and of one request's proof
bundle (``signoff audit prove``). Pure: entries come in as ``LogEntry`` values, keys as
``PublicKeys``; nothing here touches a store or the network.

``verify_log`` recomputes every leaf from the stored envelope bytes, checks the bytes are the
canonical encoding, verifies every DSSE signature against the published keys, checks indices
run 0, 1, 2, … without gaps, checks each statement's ``previous_log_index`` is the latest
earlier entry for the same request (same subject digest), rebuilds the RFC 6962 tree with a
compact range (O(log n) hashes held), and compares the roots at the sizes of the given
checkpoints. Ed25519 verification dominates the cost (~50 µs per entry with libsodium), so
large logs are checked in chunks by a small process pool while this process keeps the order,
the tree and the chain.

Errors: ``AuditError`` (an ``EvidenceError`` carrying ``index``, the first bad entry, or
``None`` when the fault is in a checkpoint) naming the first problem found.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any

from bot.domain import LogEntry
from bot.errors import EvidenceError
from bot.evidence import dsse, merkle
from bot.evidence.checkpoint import parse_checkpoint, verify_checkpoint
from bot.evidence.keys import PublicKeys
from bot.evidence.statement import parse_statement, subject_digest

log = logging.getLogger(__name__)

CHUNK = 4096
"""Entries per unit of work sent to a worker process."""


class AuditError(EvidenceError):
    """The log or a bundle does not verify; ``index`` is the first bad entry (if any)."""

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


@dataclass(slots=True)
class AuditReport:
    """What ``verify_log`` proved."""

    size: int
    root: bytes
    checkpoint_size: int | None = None
    older_checkpoint_size: int | None = None
    requests: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    signers: dict[str, int] = field(default_factory=dict)


# -- per-entry work (runs in worker processes for big logs) -----------------------------

_Checked = tuple[bytes, str, int | None, str, str, str, str]
"""(recomputed leaf, subject digest, previous index, request id, decision, kid, signed at)"""


def _check_envelope(data: bytes, keys: PublicKeys) -> _Checked:
    envelope = dsse.decode(data)
    payload = dsse.verify_envelope(envelope, keys)
    statement = parse_statement(payload)
    predicate = statement["predicate"]
    kid = next(s.get("keyid", "") for s in envelope["signatures"] if s.get("keyid", "") in keys)
    return (
        merkle.leaf_hash(data),
        subject_digest(statement),
        predicate.get("previous_log_index"),
        predicate["request"]["id"],
        predicate["decision"],
        kid,
        str((predicate.get("timestamps") or {}).get("at") or ""),
    )


def _check_chunk(raw_keys: Mapping[str, bytes], envelopes: Sequence[bytes]) -> list[_Checked | str]:
    """Check envelopes; a failure becomes its message so the caller can order errors."""
    keys = PublicKeys(raw_keys)
    out: list[_Checked | str] = []
    for data in envelopes:
        try:
            out.append(_check_envelope(data, keys))
        except EvidenceError as exc:
            out.append(exc.message)
    return out


# -- the tree -----------------------------------------------------------------------------


class CompactRange:
    """RFC 6962 tree over leaves appended in order, holding one hash per set bit of the size."""

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[bytes] = []

    def append(self, leaf: bytes) -> None:
        self._stack.append(leaf)
        n = self.size
        while n & 1:
            right = self._stack.pop()
            self._stack[-1] = merkle.node_hash(self._stack[-1], right)
            n >>= 1
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return merkle.EMPTY_ROOT
        acc = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            acc = merkle.node_hash(left, acc)
        return acc


# -- verify_log ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Mark:
    name: str
    size: int
    root: bytes


class _Auditor:
    """Order-dependent checks, run in this process in index order."""

    def __init__(
        self, marks: Sequence[_Mark], revoked: Mapping[str, datetime] | None = None
    ) -> None:
        self.revoked = dict(revoked or {})
        self.tree = CompactRange()
        self.last: dict[str, int] = {}
        self.report = AuditReport(size=0, root=merkle.EMPTY_ROOT)
        self.marks = sorted(marks, key=lambda m: m.size)
        self.matched: list[_Mark] = []
        self._check_marks()

    def _check_marks(self) -> None:
        while self.marks and self.marks[0].size == self.tree.size:
            mark = self.marks.pop(0)
            if self.tree.root() != mark.root:
                start = self.matched[-1].size if self.matched else 0
                raise AuditError(
                    f"log root at size {mark.size} does not match the {mark.name}: one of "
                    f"entries {start}..{mark.size - 1} was altered, reordered or replaced",
                    index=None,
                )
            self.matched.append(mark)

    def _check_revocation(self, index: int, kid: str, at: str) -> None:
        """``keys revoke KID --since T``: entries signed by KID dated after T fail."""
        try:
            signed = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            signed = None  # undated: cannot be shown to predate the revocation
        if signed is not None and signed.tzinfo is None:
            signed = None
        since = self.revoked[kid]
        if signed is None or signed > since:
            raise AuditError(
                f"log entry {index}: signed by revoked key {kid} at {at or '(no date)'}, "
                f"after its revocation ({since.isoformat().replace('+00:00', 'Z')})",
                index=index,
            )

    def add(self, entry: LogEntry, checked: _Checked | str) -> None:
        index = self.tree.size
        if entry.index != index:
            if entry.index > index:
                raise AuditError(
                    f"log entry {index} is missing (the next stored entry is {entry.index})",
                    index=index,
                )
            raise AuditError(
                f"log entry {entry.index} is out of order (expected entry {index})", index=index
            )
        if isinstance(checked, str):
            raise AuditError(f"log entry {index}: {checked}", index=index)
        leaf, digest, prev, request_id, decision, kid, at = checked
        if kid in self.revoked:
            self._check_revocation(index, kid, at)
        if entry.leaf_hash != leaf:
            raise AuditError(
                f"log entry {index}: stored leaf hash does not match its envelope", index=index
            )
        if entry.request_id is not None and entry.request_id != request_id:
            raise AuditError(
                f"log entry {index}: filed under request {entry.request_id} "
                f"but attests request {request_id}",
                index=index,
            )
        if entry.event.value != decision:
            raise AuditError(
                f"log entry {index}: filed as {entry.event.value} but attests {decision}",
                index=index,
            )
        expected = self.last.get(digest)
        if prev != expected:
            if prev is not None and prev >= index:
                why = f"previous_log_index {prev} is not an earlier entry"
            elif expected is None:
                why = f"previous_log_index is {prev} but this is the request's first entry"
            else:
                why = f"previous_log_index is {prev}, the request's previous entry is {expected}"
            raise AuditError(f"log entry {index}: {why}", index=index)
        self.last[digest] = index
        self.tree.append(leaf)
        report = self.report
        report.decisions[decision] = report.decisions.get(decision, 0) + 1
        report.signers[kid] = report.signers.get(kid, 0) + 1
        self._check_marks()

    def finish(self) -> AuditReport:
        if self.marks:
            mark = self.marks[0]
            raise AuditError(
                f"log has {self.tree.size} entries but the {mark.name} covers {mark.size}: "
                f"log entry {self.tree.size} onwards is missing",
                index=self.tree.size,
            )
        self.report.size = self.tree.size
        self.report.root = self.tree.root()
        self.report.requests = len(self.last)
        return self.report


def _batches(entries: Iterable[LogEntry], size: int) -> Iterator[list[LogEntry]]:
    it = iter(entries)
    while batch := list(islice(it, size)):
        yield batch


def verify_log(
    entries: Iterable[LogEntry],
    keys: PublicKeys,
    *,
    checkpoint: str | None = None,
    older_checkpoint: str | None = None,
    origin: str | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
    chunk: int = CHUNK,
) -> AuditReport:
    """Verify the whole log from entry 0 (``entries`` in index order). See the module doc.

    ``checkpoint`` is the latest signed checkpoint; ``older_checkpoint`` one saved earlier
    (its root must be the root of the first ``size`` entries now: the log only grew).
    ``workers`` processes verify signatures (default: the CPU count, capped at 4; 0 or 1
    means in this process); the pool starts only once more than one ``chunk`` arrives.
    ``progress`` gets the number of entries verified so far, once per chunk.

    Raises ``AuditError`` naming the first bad entry (or the bad checkpoint).
    """
    marks: list[_Mark] = []
    for name, text in (("checkpoint", checkpoint), ("older checkpoint", older_checkpoint)):
        if text is None:
            continue
        try:
            size, root = verify_checkpoint(text, keys, origin)
        except EvidenceError as exc:
            raise AuditError(f"{name}: {exc.message}") from exc
        marks.append(_Mark(name, size, root))
    if len(marks) == 2 and marks[1].size > marks[0].size:
        raise AuditError(
            f"older checkpoint covers {marks[1].size} entries, more than the latest "
            f"({marks[0].size}): the log was truncated"
        )
    auditor = _Auditor(marks, keys.revoked)
    for mark in marks:
        if mark.name == "checkpoint":
            auditor.report.checkpoint_size = mark.size
        else:
            auditor.report.older_checkpoint_size = mark.size
    raw = keys.raw()
    if workers is None:
        workers = min(os.cpu_count() or 1, 4)
    batches = _batches(entries, chunk)
    first = next(batches, [])
    done = 0

    def consume(batch: list[LogEntry], results: list[_Checked | str]) -> None:
        nonlocal done
        for entry, checked in zip(batch, results, strict=True):
            auditor.add(entry, checked)
        done += len(batch)
        if progress is not None:
            progress(done)

    if workers <= 1 or len(first) < chunk:
        for batch in _chain(first, batches):
            consume(batch, _check_chunk(raw, [e.envelope for e in batch]))
        return auditor.finish()

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        pending: collections.deque[
            tuple[list[LogEntry], concurrent.futures.Future[list[_Checked | str]]]
        ] = collections.deque()
        try:
            for batch in _chain(first, batches):
                envelopes = [e.envelope for e in batch]
                pending.append((batch, pool.submit(_check_chunk, raw, envelopes)))
                if len(pending) > 2 * workers:
                    done_batch, future = pending.popleft()
                    consume(done_batch, future.result())
            while pending:
                done_batch, future = pending.popleft()
                consume(done_batch, future.result())
        finally:
            for _, future in pending:
                future.cancel()
    return auditor.finish()


def _chain(first: list[LogEntry], rest: Iterator[list[LogEntry]]) -> Iterator[list[LogEntry]]:
    if first:
        yield first
    yield from rest


# -- proof bundles ------------------------------------------------------------------------


def prove_bundle(
    request_id: str,
    entries: Iterable[tuple[LogEntry, Sequence[bytes]]],
    checkpoint: str,
    keys: PublicKeys,
) -> dict[str, Any]:
    """The ``audit prove`` JSON bundle: every attestation of ``request_id`` with its inclusion
    proof against ``checkpoint`` (whose tree size the proofs were made for) and the JWKS.

    Raises ``EvidenceError`` when the checkpoint is malformed or an envelope is not JSON.
    """
    size = parse_checkpoint(checkpoint).size
    return {
        "request_id": request_id,
        "entries": [
            {
                "index": entry.index,
                "envelope": dsse.decode(entry.envelope),
                "inclusion_proof": {
                    "tree_size": size,
                    "hashes": [dsse.b64encode(h) for h in proof],
                },
                "checkpoint": checkpoint,
            }
            for entry, proof in entries
        ],
        "keys": keys.jwks(),
    }


def verify_bundle(
    bundle: Mapping[str, Any], keys: PublicKeys | None = None, *, origin: str | None = None
) -> list[dict[str, Any]]:
    """Verify an ``audit prove`` bundle offline; returns the statements, oldest first.

    Uses ``keys`` when given (a key obtained out of band), else the bundle's own JWKS. Each
    entry's envelope must verify, attest ``request_id``, be included in its checkpoint's tree
    and chain to the entry before it (so none is left out between the first and the last).

    Raises ``AuditError`` naming the entry index and the reason.
    """
    try:
        request_id = bundle["request_id"]
        items = bundle["entries"]
        trusted = keys if keys is not None else PublicKeys.from_jwks(bundle["keys"])
    except (KeyError, TypeError) as exc:
        raise AuditError("bundle lacks request_id, entries or keys") from exc
    if not isinstance(items, list) or not items:
        raise AuditError("bundle has no entries")
    statements: list[dict[str, Any]] = []
    previous: int | None = None
    digest: str | None = None
    for item in items:
        index = item.get("index") if isinstance(item, Mapping) else None
        if type(index) is not int or index < 0:
            raise AuditError("bundle entry has no index")
        try:
            envelope = item["envelope"]
            dsse.check_shape(envelope)
            leaf = merkle.leaf_hash(dsse.encode(envelope))
            statement = parse_statement(dsse.verify_envelope(envelope, trusted))
            proof = item["inclusion_proof"]
            size, root = verify_checkpoint(item["checkpoint"], trusted, origin)
            if proof["tree_size"] != size:
                raise EvidenceError("inclusion proof is for another tree size than its checkpoint")
            hashes = [dsse.b64decode(h, "proof hash") for h in proof["hashes"]]
            merkle.verify_inclusion(leaf, index, size, hashes, root)
        except (KeyError, TypeError) as exc:
            raise AuditError(f"bundle entry {index} is malformed", index=index) from exc
        except EvidenceError as exc:
            raise AuditError(f"bundle entry {index}: {exc.message}", index=index) from exc
        predicate = statement["predicate"]
        if predicate["request"]["id"] != request_id:
            raise AuditError(f"bundle entry {index} attests another request", index=index)
        if digest is not None and subject_digest(statement) != digest:
            raise AuditError(f"bundle entry {index} has another subject digest", index=index)
        digest = subject_digest(statement)
        if predicate.get("previous_log_index") != previous:
            raise AuditError(
                f"bundle entry {index}: previous_log_index is "
                f"{predicate.get('previous_log_index')}, expected {previous}",
                index=index,
            )
        previous = index
        statements.append(statement)
    return statements


__all__ = [
    "CHUNK",
    "AuditError",
    "AuditReport",
    "CompactRange",
    "prove_bundle",
    "verify_bundle",
    "verify_log",
]
