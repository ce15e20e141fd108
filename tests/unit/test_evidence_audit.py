"""Offline verification of the whole log and of per-request proof bundles."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.domain import (
    Approver,
    Event,
    LogEntry,
    Platform,
    PolicyRef,
    Request,
    Requirement,
    Status,
)
from bot.evidence import merkle
from bot.evidence.audit import AuditError, CompactRange, prove_bundle, verify_bundle, verify_log
from bot.evidence.checkpoint import sign_checkpoint
from bot.evidence.keys import KeyRing, PublicKeys
from bot.evidence.statement import attest
from tests import factories

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
ORIGIN = "signoff.test/log"
ALICE = Approver(Platform.SLACK, "T0", "U0ALICE", "Alice")
# round robin over four requests: A B C D A B C D A B C D
SCRIPT = [
    (Event.APPROVED, Status.PENDING),  # first vote of a quorum of two
    (Event.APPROVED, Status.APPROVED),  # the final decision
    (Event.EXECUTED, Status.APPROVED),
]
REQUESTS = "ABCD"


def make_request(name: str, status: Status) -> Request:
    return factories.make_request(
        f"req-{name}",
        agent_id="agent-1",
        tool="repos.merge",
        arguments={"n": name},
        status=status,
        policy=PolicyRef("sha256:" + "e" * 64, None, "merge"),
        requirement=Requirement(groups=("eng",), quorum=2),
        created_at=T0,
    )


def build_log(signer: KeyRing, *, rotate_at: int | None = None) -> list[LogEntry]:
    entries: list[LogEntry] = []
    last: dict[str, int] = {}
    for event, status in SCRIPT:
        for name in REQUESTS:
            index = len(entries)
            if index == rotate_at:
                signer.rotate()
            request = make_request(name, status)
            envelope = attest(
                request,
                event,
                signer,
                at=T0 + timedelta(seconds=index),
                approver=ALICE if event is Event.APPROVED else None,
                group="eng" if event is Event.APPROVED else None,
                prev_index=last.get(request.id),
            )
            last[request.id] = index
            entries.append(
                LogEntry(index, request.id, envelope, merkle.leaf_hash(envelope), event, T0)
            )
    return entries


def checkpoint(entries: list[LogEntry], size: int, ring: KeyRing) -> str:
    tree = CompactRange()
    for entry in entries[:size]:
        tree.append(merkle.leaf_hash(entry.envelope))
    return sign_checkpoint(ORIGIN, size, tree.root(), ring)


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing.create(tmp_path / "keys")


@pytest.fixture
def log(ring: KeyRing) -> list[LogEntry]:
    return build_log(ring)


def audit(entries: list[LogEntry], keys: PublicKeys, **kw: Any) -> AuditError:
    with pytest.raises(AuditError) as info:
        verify_log(entries, keys, **kw)
    return info.value


def test_intact_log_verifies(ring: KeyRing, log: list[LogEntry]) -> None:
    seen: list[int] = []
    report = verify_log(
        log,
        ring.public(),
        checkpoint=checkpoint(log, 12, ring),
        older_checkpoint=checkpoint(log, 5, ring),
        origin=ORIGIN,
        progress=seen.append,
        chunk=5,
    )
    assert (report.size, report.checkpoint_size, report.older_checkpoint_size) == (12, 12, 5)
    assert report.root == tree_root(log)
    assert report.requests == 4
    assert report.decisions == {"approved": 8, "executed": 4}
    assert report.signers == {ring.kid: 12}
    assert seen == [5, 10, 12]


def tree_root(entries: list[LogEntry]) -> bytes:
    tree = CompactRange()
    for entry in entries:
        tree.append(entry.leaf_hash)
    return tree.root()


def test_empty_log(ring: KeyRing) -> None:
    report = verify_log([], ring, checkpoint=sign_checkpoint(ORIGIN, 0, merkle.EMPTY_ROOT, ring))
    assert (report.size, report.root) == (0, merkle.EMPTY_ROOT)


def test_log_spanning_a_key_rotation(ring: KeyRing) -> None:
    first = ring.kid
    entries = build_log(ring, rotate_at=6)
    report = verify_log(entries, ring.public(), checkpoint=checkpoint(entries, 12, ring))
    assert report.signers == {first: 6, ring.kid: 6}


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.mark.parametrize("index", [0, 5, 11])
@pytest.mark.parametrize("position", [2, 40, 300, -30])
@pytest.mark.parametrize("fix_leaf", [False, True])
def test_one_changed_byte_names_the_entry(
    ring: KeyRing, log: list[LogEntry], index: int, position: int, fix_leaf: bool
) -> None:
    data = flip(log[index].envelope, position)
    log[index] = replace(
        log[index], envelope=data, leaf_hash=merkle.leaf_hash(data) if fix_leaf else b"\0" * 32
    )
    error = audit(log, ring)
    assert error.index == index
    assert f"log entry {index}" in error.diagnostics()


def test_non_canonical_envelope_bytes_are_refused(ring: KeyRing, log: list[LogEntry]) -> None:
    data = json.dumps(json.loads(log[3].envelope), indent=1).encode()
    log[3] = replace(log[3], envelope=data, leaf_hash=merkle.leaf_hash(data))
    error = audit(log, ring)
    assert error.index == 3 and "canonical" in error.message


def test_deleted_entry_is_named(ring: KeyRing, log: list[LogEntry]) -> None:
    del log[7]
    error = audit(log, ring)
    assert error.index == 7 and "missing" in error.message


def test_duplicated_entry_is_named(ring: KeyRing, log: list[LogEntry]) -> None:
    log.insert(4, log[3])
    error = audit(log, ring)
    assert error.index == 4 and "out of order" in error.message


def swap(entries: list[LogEntry], i: int, j: int) -> None:
    """Swap the content of two rows, keeping their index numbers."""
    entries[i], entries[j] = replace(entries[j], index=i), replace(entries[i], index=j)


def test_swapped_entries_of_one_request_are_named(ring: KeyRing, log: list[LogEntry]) -> None:
    swap(log, 5, 9)  # req-B's decision and its execution
    error = audit(log, ring)
    assert error.index == 5 and "previous_log_index" in error.message


def test_swapped_entries_that_keep_every_chain_are_caught_by_the_checkpoint(
    ring: KeyRing, log: list[LogEntry]
) -> None:
    cp, older = checkpoint(log, 12, ring), checkpoint(log, 8, ring)
    swap(log, 8, 9)  # the last entries of req-A and req-B: each chain still points back right
    verify_log(log, ring)  # nothing per entry betrays it...
    error = audit(log, ring, checkpoint=cp, older_checkpoint=older)
    assert error.index is None
    assert "entries 8..11" in error.message  # ...but the signed root does, narrowed down


def test_truncation_against_an_older_checkpoint(ring: KeyRing, log: list[LogEntry]) -> None:
    older = checkpoint(log, 8, ring)
    error = audit(log[:6], ring, older_checkpoint=older)
    assert error.index == 6 and "missing" in error.message
    cp = checkpoint(log, 6, ring)
    error = audit(log[:6], ring, checkpoint=cp, older_checkpoint=older)
    assert "truncated" in error.message


def test_rewritten_history_fails_the_older_checkpoint(ring: KeyRing, log: list[LogEntry]) -> None:
    older = checkpoint(log, 8, ring)
    # re-attest entry 6 with another time: validly signed and chained, but not the leaf
    # the older checkpoint committed to
    other = attest(
        make_request("C", Status.APPROVED),
        Event.APPROVED,
        ring,
        at=T0 + timedelta(days=1),
        approver=ALICE,
        group="eng",
        prev_index=2,
    )
    log[6] = replace(log[6], envelope=other, leaf_hash=merkle.leaf_hash(other))
    verify_log(log, ring)
    error = audit(log, ring, older_checkpoint=older)
    assert "older checkpoint" in error.message and "entries 0..7" in error.message


def test_log_resigned_with_an_unknown_key(
    ring: KeyRing, log: list[LogEntry], tmp_path: Path
) -> None:
    forger = KeyRing.create(tmp_path / "forger")
    forged = build_log(forger)
    error = audit(forged, ring)
    assert error.index == 0 and forger.kid in error.message
    error = audit(forged, ring, checkpoint=checkpoint(forged, 12, forger))
    assert error.message.startswith("checkpoint:")


def test_one_entry_signed_by_an_unknown_key(
    ring: KeyRing, log: list[LogEntry], tmp_path: Path
) -> None:
    forger = KeyRing.create(tmp_path / "forger")
    data = attest(make_request("D", Status.APPROVED), Event.EXECUTED, forger, at=T0, prev_index=7)
    log[11] = replace(log[11], envelope=data, leaf_hash=merkle.leaf_hash(data))
    assert audit(log, ring).index == 11


def test_misfiled_entry(ring: KeyRing, log: list[LogEntry]) -> None:
    log[2] = replace(log[2], request_id="req-Z")
    assert audit(log, ring).index == 2
    log[2] = replace(log[2], request_id="req-C", event=Event.DENIED)
    error = audit(log, ring)
    assert error.index == 2 and "denied" in error.message


def test_checkpoint_with_wrong_origin(ring: KeyRing, log: list[LogEntry]) -> None:
    error = audit(log, ring, checkpoint=checkpoint(log, 12, ring), origin="other/log")
    assert error.message.startswith("checkpoint:")


def test_process_pool_gives_the_same_answers(ring: KeyRing, log: list[LogEntry]) -> None:
    cp = checkpoint(log, 12, ring)
    pooled = verify_log(log, ring.public(), checkpoint=cp, workers=2, chunk=3)
    assert pooled == verify_log(log, ring.public(), checkpoint=cp, workers=1)
    bad = flip(log[8].envelope, 300)
    log[8] = replace(log[8], envelope=bad, leaf_hash=merkle.leaf_hash(bad))
    assert audit(log, ring.public(), workers=2, chunk=3).index == 8


# -- bundles ------------------------------------------------------------------------------


def nodes_of(entries: list[LogEntry]) -> merkle.NodeGetter:
    nodes: dict[tuple[int, int], bytes] = {}

    def get(level: int, index: int) -> bytes:
        return nodes[(level, index)]

    for entry in entries:
        for level, idx, h in merkle.completed_nodes(entry.index, entry.leaf_hash, get):
            nodes[(level, idx)] = h
    return get


def make_bundle(ring: KeyRing, log: list[LogEntry], name: str = "B") -> dict[str, Any]:
    get = nodes_of(log)
    cp = checkpoint(log, len(log), ring)
    mine = [e for e in log if e.request_id == f"req-{name}"]
    return prove_bundle(
        f"req-{name}",
        [(e, merkle.inclusion_proof(e.index, len(log), get)) for e in mine],
        cp,
        ring,
    )


def test_bundle_verifies_offline_with_its_own_keys(ring: KeyRing, log: list[LogEntry]) -> None:
    bundle = json.loads(json.dumps(make_bundle(ring, log)))
    statements = verify_bundle(bundle)
    assert [s["predicate"]["decision"] for s in statements] == ["approved", "approved", "executed"]
    assert [e["index"] for e in bundle["entries"]] == [1, 5, 9]
    assert verify_bundle(bundle, PublicKeys.from_jwks(ring.jwks()), origin=ORIGIN)


def test_bundle_refused_with_another_external_key(
    ring: KeyRing, log: list[LogEntry], tmp_path: Path
) -> None:
    other = KeyRing.create(tmp_path / "other")
    with pytest.raises(AuditError, match="not signed by any published key"):
        verify_bundle(make_bundle(ring, log), other)


def test_bundle_tampering(ring: KeyRing, log: list[LogEntry]) -> None:
    good = make_bundle(ring, log)

    changed = copy.deepcopy(good)
    changed["entries"][1]["envelope"]["payloadType"] = "application/json"
    with pytest.raises(AuditError, match="entry 5"):
        verify_bundle(changed)

    gap = copy.deepcopy(good)
    del gap["entries"][1]
    with pytest.raises(AuditError, match="previous_log_index is 5, expected 1"):
        verify_bundle(gap)

    bad_proof = copy.deepcopy(good)
    bad_proof["entries"][0]["inclusion_proof"]["hashes"].pop()
    with pytest.raises(AuditError, match="entry 1: inclusion proof"):
        verify_bundle(bad_proof)

    moved = copy.deepcopy(good)
    moved["entries"][0]["index"] = 2
    with pytest.raises(AuditError, match="entry 2"):
        verify_bundle(moved)

    other_request = copy.deepcopy(good)
    other_request["request_id"] = "req-A"
    with pytest.raises(AuditError, match="another request"):
        verify_bundle(other_request)

    with pytest.raises(AuditError):
        verify_bundle({"request_id": "req-B", "entries": [], "keys": ring.jwks()})
    with pytest.raises(AuditError):
        verify_bundle({"entries": []})
