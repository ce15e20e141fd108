"""HITL review data (SPEC §3 ``signoff report``): pure computation over requests and votes.

Owns the figures and their definitions; rendering (table, JSON, HTML with charts) lives in
the console adapter. Nothing here touches a store, a clock or the network: the caller loads
the requests created in ``[since, until)`` and their votes and passes ``now``.

Definitions (so the numbers can be checked by hand):

- A *human decision* is a confirm-tier request that ended ``approved`` or ``denied`` with at
  least one vote (a denial because the agent was suspended has none). Its *time to decision*
  is ``decided_at - created_at``; an approver's time is ``vote.at - created_at`` (the card is
  shown when the request is created).
- *Approval rate* = approved / (approved + denied) over human decisions (for an approver:
  approve votes / votes). ``None`` when there is nothing to divide.
- *Median* is the usual middle value (mean of the two middle values for an even count);
  *p90* is the nearest-rank 90th percentile (the ``ceil(0.9 n)``-th smallest value).
- Per tool and per group figures count confirm-tier requests (a request counts for every
  group in its ``approver_groups``, escalation groups included).
- *Escalations*: requests with at least one escalation step run (``steps_done``), the steps
  run, and requests escalated to another group (``extra_groups``).
- *Signals*: ``fast_approver`` (votes cast sooner than ``fast_decision_floor`` after the card
  was shown), ``always_approved`` / ``always_denied`` (a tool with at least ``min_requests``
  human decisions, all one way), ``growing_backlog`` (a group whose pending count rises at
  each of three sample points, a third, two thirds and all the way through the window,
  ending at ``backlog_min`` or more). Requests created before ``since`` are not seen.

Raises nothing on well-formed input.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.domain import Request, Status, Tier, Verdict, Vote
from bot.policy.people import label as person_label

HISTOGRAM_EDGES: tuple[float, ...] = (5, 30, 60, 300, 900, 3600, 14400)
"""Upper edges (seconds) of the time-to-decision bins; the last bin is open-ended."""


DEFAULT_MIN_REQUESTS = 10


@dataclass(frozen=True, slots=True)
class Thresholds:
    fast_decision_floor: timedelta = timedelta(seconds=5)
    min_requests: int = DEFAULT_MIN_REQUESTS
    backlog_min: int = 3


@dataclass(frozen=True, slots=True)
class Durations:
    """Summary of a set of durations, in seconds."""

    count: int
    median: float | None
    p90: float | None


@dataclass(frozen=True, slots=True)
class Breakdown:
    """Figures for one tool, group or approver (``key``)."""

    key: str
    requests: int
    approved: int
    denied: int
    expired: int
    pending: int
    approval_rate: float | None
    time_to_decision: Durations
    fast: int = 0


@dataclass(frozen=True, slots=True)
class ReasonCount:
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class Escalations:
    requests: int
    steps: int
    to_groups: int


@dataclass(frozen=True, slots=True)
class Signal:
    kind: str  # fast_approver | always_approved | always_denied | growing_backlog
    subject: str
    detail: str
    suggestion: str


@dataclass(frozen=True, slots=True)
class HistogramBin:
    label: str
    lower: float
    upper: float | None
    count: int


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    counts: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class Report:
    since: datetime | None
    until: datetime
    generated_at: datetime
    thresholds: Thresholds
    total: int
    by_tier: Mapping[str, int]
    by_outcome: Mapping[str, int]
    by_tier_outcome: Mapping[str, Mapping[str, int]]
    decisions: Durations
    approval_rate: float | None
    tools: tuple[Breakdown, ...]
    groups: tuple[Breakdown, ...]
    approvers: tuple[Breakdown, ...]
    denial_reasons: tuple[ReasonCount, ...]
    expiries: int
    expiries_by_tool: Mapping[str, int]
    escalations: Escalations
    signals: tuple[Signal, ...]
    histogram: tuple[HistogramBin, ...]
    bucket: str
    volume: tuple[Bucket, ...] = field(default=())


def summarize(values: Iterable[float]) -> Durations:
    data = sorted(values)
    if not data:
        return Durations(0, None, None)
    p90 = data[max(0, math.ceil(0.9 * len(data)) - 1)]
    return Durations(len(data), float(statistics.median(data)), float(p90))


def _rate(yes: int, no: int) -> float | None:
    return yes / (yes + no) if yes + no else None


def _seconds(delta: timedelta) -> float:
    return delta.total_seconds()


def human_decided(request: Request, votes: Sequence[Vote]) -> bool:
    return (
        request.tier is Tier.CONFIRM
        and request.status in (Status.APPROVED, Status.DENIED)
        and request.decided_at is not None
        and bool(votes)
    )


def approver_label(vote: Vote) -> str:
    """How an approver is named in the report: the person (``alice``, SPEC §5), or for an
    id no person claims, the display name and ``<platform>:<id>``."""
    return person_label(vote.approver)


def _breakdown(
    key: str, requests: Sequence[Request], votes: Mapping[str, Sequence[Vote]]
) -> Breakdown:
    approved = denied = expired = pending = 0
    times: list[float] = []
    for r in requests:
        if r.status is Status.EXPIRED:
            expired += 1
        elif r.status is Status.PENDING:
            pending += 1
        elif human_decided(r, votes.get(r.id, ())):
            assert r.decided_at is not None  # noqa: S101 - checked by human_decided
            times.append(_seconds(r.decided_at - r.created_at))
            if r.status is Status.APPROVED:
                approved += 1
            else:
                denied += 1
    return Breakdown(
        key,
        len(requests),
        approved,
        denied,
        expired,
        pending,
        _rate(approved, denied),
        summarize(times),
    )


def _sorted(items: Iterable[Breakdown]) -> tuple[Breakdown, ...]:
    return tuple(sorted(items, key=lambda b: (-b.requests, b.key)))


def _approvers(
    confirm: Sequence[Request], votes: Mapping[str, Sequence[Vote]], floor: timedelta
) -> tuple[Breakdown, ...]:
    cast: dict[str, list[tuple[Vote, float]]] = defaultdict(list)
    for r in confirm:
        for v in votes.get(r.id, ()):
            cast[approver_label(v)].append((v, _seconds(v.at - r.created_at)))
    out = []
    for key, items in cast.items():
        yes = sum(1 for v, _ in items if v.verdict is Verdict.APPROVE)
        no = len(items) - yes
        fast = sum(1 for _, t in items if t < floor.total_seconds())
        out.append(
            Breakdown(
                key, len(items), yes, no, 0, 0, _rate(yes, no), summarize(t for _, t in items), fast
            )
        )
    return _sorted(out)


def _bucket_size(span: timedelta) -> str:
    if span <= timedelta(days=2):
        return "hour"
    if span <= timedelta(days=90):
        return "day"
    return "week"


def bucket_start(moment: datetime, size: str) -> datetime:
    start = moment.replace(minute=0, second=0, microsecond=0)
    if size == "hour":
        return start
    start = start.replace(hour=0)
    if size == "day":
        return start
    return start - timedelta(days=start.weekday())


def _step(size: str) -> timedelta:
    return {"hour": timedelta(hours=1), "day": timedelta(days=1)}.get(size, timedelta(weeks=1))


def _volume(
    requests: Sequence[Request], since: datetime, until: datetime, size: str
) -> tuple[Bucket, ...]:
    counts: dict[datetime, Counter[str]] = defaultdict(Counter)
    for r in requests:
        counts[bucket_start(r.created_at, size)][r.status.value] += 1
    out = []
    at = bucket_start(since, size)
    while at < until:
        out.append(Bucket(at, dict(counts.get(at, Counter()))))
        at += _step(size)
    return tuple(out)


def _duration_label(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g}s"
    if seconds < 3600:
        return f"{seconds / 60:g}m"
    return f"{seconds / 3600:g}h"


def _histogram(times: Sequence[float]) -> tuple[HistogramBin, ...]:
    bins = []
    lower = 0.0
    for upper in HISTOGRAM_EDGES:
        n = sum(1 for t in times if lower <= t < upper)
        name = (
            f"< {_duration_label(upper)}"
            if lower == 0
            else f"{_duration_label(lower)}-{_duration_label(upper)}"
        )
        bins.append(HistogramBin(name, lower, float(upper), n))
        lower = float(upper)
    n = sum(1 for t in times if t >= lower)
    bins.append(HistogramBin(f">= {_duration_label(lower)}", lower, None, n))
    return tuple(bins)


def _backlog(requests: Sequence[Request], at: datetime) -> int:
    return sum(
        1 for r in requests if r.created_at <= at and (r.decided_at is None or r.decided_at > at)
    )


def _signals(
    tools: Sequence[Breakdown],
    approvers: Sequence[Breakdown],
    by_group: Mapping[str, Sequence[Request]],
    since: datetime,
    until: datetime,
    th: Thresholds,
) -> tuple[Signal, ...]:
    out: list[Signal] = []
    floor = th.fast_decision_floor.total_seconds()
    for a in approvers:
        if a.fast:
            median = a.time_to_decision.median
            out.append(
                Signal(
                    "fast_approver",
                    a.key,
                    f"{a.fast} of {a.requests} decisions within {floor:g}s of the card being shown "
                    f"(median {median:.1f}s)"
                    if median is not None
                    else f"{a.fast} fast decisions",
                    "review these decisions; consider quorum 2 or a second group for these tools",
                )
            )
    for t in tools:
        decided = t.approved + t.denied
        if decided >= th.min_requests and t.denied == 0:
            out.append(
                Signal(
                    "always_approved",
                    t.key,
                    f"approved {t.approved} of {decided} decisions",
                    "consider the auto tier with a rate limit (or notify) for this tool",
                )
            )
        elif decided >= th.min_requests and t.approved == 0:
            out.append(
                Signal(
                    "always_denied",
                    t.key,
                    f"denied {t.denied} of {decided} decisions",
                    "consider a block rule for this tool",
                )
            )
    span = until - since
    points = (since + span / 3, since + 2 * span / 3, until)
    for group, requests in sorted(by_group.items()):
        b1, b2, b3 = (_backlog(requests, p) for p in points)
        if b1 < b2 < b3 and b3 >= th.backlog_min:
            out.append(
                Signal(
                    "growing_backlog",
                    group,
                    f"pending requests rose {b1} → {b2} → {b3} across the window",
                    "add approvers to the group, shorten escalation, or move routine calls "
                    "to a cheaper tier",
                )
            )
    return tuple(out)


def build_report(
    requests: Sequence[Request],
    votes: Mapping[str, Sequence[Vote]],
    *,
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
    thresholds: Thresholds | None = None,
) -> Report:
    """The review data for ``requests`` (those created in ``[since, until)``) and their
    ``votes`` (by request id). ``until`` defaults to ``now``; ``since`` to the oldest
    request."""
    th = thresholds or Thresholds()
    end = until or now
    start = since or min((r.created_at for r in requests), default=end)
    by_tier = Counter(r.tier.value for r in requests)
    by_outcome = Counter(r.status.value for r in requests)
    matrix: dict[str, Counter[str]] = defaultdict(Counter)
    for r in requests:
        matrix[r.tier.value][r.status.value] += 1

    confirm = [r for r in requests if r.tier is Tier.CONFIRM]
    by_tool: dict[str, list[Request]] = defaultdict(list)
    by_group: dict[str, list[Request]] = defaultdict(list)
    for r in confirm:
        by_tool[r.call.tool].append(r)
        for g in r.approver_groups:
            by_group[g].append(r)
    tools = _sorted(_breakdown(k, v, votes) for k, v in by_tool.items())
    groups = _sorted(_breakdown(k, v, votes) for k, v in by_group.items())
    approvers = _approvers(confirm, votes, th.fast_decision_floor)
    overall = _breakdown("all", confirm, votes)

    times = [
        _seconds(r.decided_at - r.created_at)
        for r in confirm
        if r.decided_at is not None and human_decided(r, votes.get(r.id, ()))
    ]
    reasons: Counter[str] = Counter()
    first_spelling: dict[str, str] = {}
    for r in sorted(requests, key=lambda r: (r.created_at, r.id)):  # first spelling wins
        if r.status is Status.DENIED:
            text = (r.reason or "(no reason given)").strip()
            key = " ".join(text.casefold().split())
            first_spelling.setdefault(key, text)
            reasons[key] += 1
    denial_reasons = tuple(
        ReasonCount(first_spelling[k], n)
        for k, n in sorted(reasons.items(), key=lambda kv: (-kv[1], first_spelling[kv[0]]))
    )
    expired = [r for r in requests if r.status is Status.EXPIRED]
    escalations = Escalations(
        requests=sum(1 for r in requests if r.steps_done > 0),
        steps=sum(r.steps_done for r in requests),
        to_groups=sum(1 for r in requests if r.extra_groups),
    )
    size = _bucket_size(end - start)
    return Report(
        since=since,
        until=end,
        generated_at=now,
        thresholds=th,
        total=len(requests),
        by_tier=dict(by_tier),
        by_outcome=dict(by_outcome),
        by_tier_outcome={k: dict(v) for k, v in matrix.items()},
        decisions=summarize(times),
        approval_rate=overall.approval_rate,
        tools=tools,
        groups=groups,
        approvers=approvers,
        denial_reasons=denial_reasons,
        expiries=len(expired),
        expiries_by_tool=dict(Counter(r.call.tool for r in expired)),
        escalations=escalations,
        signals=_signals(tools, approvers, by_group, start, end, th),
        histogram=_histogram(times),
        bucket=size,
        volume=_volume(requests, start, end, size),
    )


__all__ = [
    "DEFAULT_MIN_REQUESTS",
    "Breakdown",
    "Bucket",
    "Durations",
    "Escalations",
    "HistogramBin",
    "ReasonCount",
    "Report",
    "Signal",
    "Thresholds",
    "build_report",
    "summarize",
]
