"""Micro-benchmark of the evidence primitives (pure: no store, no HTTP).

Prints attestations/s (build statement + canonical JSON + DSSE sign + encode + leaf hash),
envelope verifications/s (what ``audit verify`` does per entry, on one core), grants/s, and
``verify_log`` entries/s with the default worker pool.

    PYTHONPATH=. .venv/bin/python bench/evidence_sign.py [--n 20000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta

from bot.domain import (
    Approver,
    Event,
    LogEntry,
    Platform,
    PolicyRef,
    Request,
    Requirement,
    Status,
    Tier,
    ToolCall,
    Verdict,
    Vote,
)
from bot.evidence import audit, merkle
from bot.evidence.canonical import arguments_sha256, call_sha256
from bot.evidence.grant import issue_grant, verify_grant
from bot.evidence.keys import KeyRing
from bot.evidence.statement import attest

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def sample_request(i: int) -> Request:
    rid = f"req-{i:08d}"
    args = {"amount": 25000 + i, "currency": "USD", "to": "acct-123", "memo": "refund 8812"}
    return Request(
        id=rid,
        agent_id="billing-agent",
        call=ToolCall(
            tool="payments.transfer",
            arguments=args,
            justification="Refund for order 8812 approved by support ticket 4471",
            context={"session_id": "s-1", "requested_by": "user@example.com"},
        ),
        tier=Tier.CONFIRM,
        status=Status.APPROVED,
        policy=PolicyRef("sha256:" + "d" * 64, "2026-11-21", "large-transfer"),
        requirement=Requirement(groups=("finance",), quorum=1),
        created_at=T0,
        arguments_sha256=arguments_sha256(args),
        call_sha256=call_sha256(rid, "billing-agent", "payments.transfer", args),
        artifact_digest="sha256:" + "c" * 64,
        deadline=T0 + timedelta(minutes=15),
        decided_at=T0 + timedelta(minutes=2),
    )


class Timer:
    """Wall and CPU time of a block: on a shared machine CPU time shows what one core does."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    def rate(self, n: int, label: str) -> None:
        print(f"{label:38s} {n / self.wall:>9,.0f}/s wall  {n / self.cpu:>9,.0f}/s per CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    n = parser.parse_args().n
    with tempfile.TemporaryDirectory() as tmp:
        ring = KeyRing.create(f"{tmp}/keys")
    alice = Approver(Platform.SLACK, "T0", "U0ALICE", "Alice", via="chat_click")
    requests = [sample_request(i) for i in range(n)]
    at = T0 + timedelta(minutes=2)

    entries = []
    with Timer() as timer:
        for i, request in enumerate(requests):
            vote = Vote(request.id, alice, Verdict.APPROVE, "finance", "ok", at)
            envelope = attest(
                request, Event.APPROVED, ring, at=at, approver=alice, group="finance", votes=(vote,)
            )
            entries.append(
                LogEntry(i, request.id, envelope, merkle.leaf_hash(envelope), Event.APPROVED, at)
            )
    timer.rate(n, "attest (statement+sign+encode+leaf)")

    keys = ring.public()
    with Timer() as timer:
        audit._check_chunk(keys.raw(), [e.envelope for e in entries])
    timer.rate(n, "verify one envelope (one core)")
    with Timer() as timer:
        report = audit.verify_log(entries, keys, workers=1)
    timer.rate(n, "verify_log, in process")
    with Timer() as timer:
        report = audit.verify_log(entries, keys)
    print(f"{'verify_log, process pool':38s} {n / timer.wall:>9,.0f}/s wall")
    assert report.size == n

    with Timer() as timer:
        tokens = [issue_grant(r, ring, issuer="bench", now=T0)[0] for r in requests]
    timer.rate(n, "issue grant")
    with Timer() as timer:
        for token, request in zip(tokens, requests, strict=True):
            verify_grant(
                token,
                keys,
                now=T0,
                request_id=request.id,
                agent_id=request.agent_id,
                tool=request.call.tool,
                arguments=request.call.arguments,
            )
    timer.rate(n, "verify grant (full binding)")


if __name__ == "__main__":
    main()
