"""A seeded review history with hand-computed answers, for the report tests.

Window: T0 .. T0 + 3h. Times are minutes (m) or seconds (s) after T0.

ids    tool               tier     group     created       outcome (decided after)
r1     payments.transfer  confirm  finance   0m            approved by alice (120 s)
r2     payments.transfer  confirm  finance   10m           approved by alice (3 s: fast)
r3     payments.transfer  confirm  finance   20m           denied by bob (600 s)
r4     payments.transfer  confirm  finance   40m           expired at 55m; 2 steps; +leads
a1     crm.read           auto     -         5m            approved
b1     repos.force_push   block    -         6m            denied (rule reason)
d1-3   db.delete          confirm  dba       60, 70, 80m   approved by bob (60, 30, 90 s)
s1-3   repos.force_push   confirm  security  100-120m      denied by carol (40 s each)
p1-4   ops.restart        confirm  ops       30-170m       pending
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot.domain import (
    Approver,
    Platform,
    PolicyRef,
    Request,
    Requirement,
    Status,
    Tier,
    Verdict,
    Vote,
)
from tests.factories import make_request

T0 = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = T0 + timedelta(hours=3)
NOW = T0 + timedelta(hours=4)
ALICE = Approver(Platform.CONSOLE, "console", "alice", "alice", via="console_login", person="alice")
BOB = Approver(Platform.CONSOLE, "console", "bob", "bob", via="console_login", person="bob")
CAROL = Approver(Platform.CONSOLE, "console", "carol", "carol", via="console_login", person="carol")


def m(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _request(
    rid: str,
    tool: str,
    created: datetime,
    *,
    tier: Tier = Tier.CONFIRM,
    group: str | None = None,
    status: Status = Status.PENDING,
    decided: datetime | None = None,
    reason: str | None = None,
    steps: int = 0,
    extra: tuple[str, ...] = (),
) -> Request:
    return make_request(
        rid,
        tool=tool,
        arguments={"n": rid},
        tier=tier,
        status=status,
        policy=PolicyRef("sha256:" + "0" * 64, "t1", "rule"),
        requirement=Requirement(groups=(group,)) if group else Requirement(),
        created_at=created,
        arguments_sha256="a" * 64,
        call_sha256=rid.ljust(64, "0"),
        deadline=created + timedelta(minutes=15) if tier is Tier.CONFIRM else None,
        decided_at=decided,
        reason=reason,
        steps_done=steps,
        extra_groups=extra,
    )


def history() -> tuple[list[Request], dict[str, list[Vote]]]:
    """(requests newest first, votes by request id)."""
    requests: list[Request] = []
    votes: dict[str, list[Vote]] = {}

    def decided(
        rid: str,
        tool: str,
        group: str,
        created: datetime,
        who: Approver,
        verdict: Verdict,
        after: timedelta,
        reason: str = "",
    ) -> None:
        at = created + after
        status = Status.APPROVED if verdict is Verdict.APPROVE else Status.DENIED
        requests.append(
            _request(
                rid, tool, created, group=group, status=status, decided=at, reason=reason or None
            )
        )
        votes[rid] = [Vote(rid, who, verdict, group, reason, at)]

    s = timedelta(seconds=1)
    decided("r1", "payments.transfer", "finance", m(0), ALICE, Verdict.APPROVE, 120 * s, "ok")
    decided("r2", "payments.transfer", "finance", m(10), ALICE, Verdict.APPROVE, 3 * s, "ok")
    decided(
        "r3", "payments.transfer", "finance", m(20), BOB, Verdict.DENY, 600 * s, "Amount too high"
    )
    requests.append(
        _request(
            "r4",
            "payments.transfer",
            m(40),
            group="finance",
            status=Status.EXPIRED,
            decided=m(55),
            reason="no decision",
            steps=2,
            extra=("leads",),
        )
    )
    requests.append(
        _request("a1", "crm.read", m(5), tier=Tier.AUTO, status=Status.APPROVED, decided=m(5))
    )
    requests.append(
        _request(
            "b1",
            "repos.force_push",
            m(6),
            tier=Tier.BLOCK,
            status=Status.DENIED,
            decided=m(6),
            reason="force-push to protected branches is never allowed",
        )
    )
    for rid, at, took in (("d1", 60, 60), ("d2", 70, 30), ("d3", 80, 90)):
        decided(rid, "db.delete", "dba", m(at), BOB, Verdict.APPROVE, took * s, "fine")
    for rid, at, why in (
        ("s1", 100, "not allowed"),
        ("s2", 110, "Not  allowed"),
        ("s3", 120, "risky"),
    ):
        decided(rid, "repos.force_push", "security", m(at), CAROL, Verdict.DENY, 40 * s, why)
    for rid, at in (("p1", 30), ("p2", 90), ("p3", 150), ("p4", 170)):
        requests.append(_request(rid, "ops.restart", m(at), group="ops"))
    requests.sort(key=lambda r: (r.created_at, r.id), reverse=True)
    return requests, votes


def as_pending(request: Request) -> Request:
    """The request as it was when created (for seeding a store through ``commit``)."""
    return replace(
        request,
        status=Status.PENDING,
        decided_at=None,
        reason=None,
        steps_done=0,
        extra_groups=(),
        version=0,
    )
