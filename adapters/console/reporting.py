"""``signoff report`` and the console's report page: load the window from the store, build
``bot.report.Report``, and render it as a text table, JSON, or HTML with inline SVG charts
(time-to-decision histogram, volume over time) — no external services, no scripts.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Protocol

import jinja2

from bot.domain import Request, Tier, Vote
from bot.report import DEFAULT_MIN_REQUESTS, Breakdown, Durations, Report, Thresholds, build_report
from bot.settings import Settings


class Requests(Protocol):
    """What a report reads: the console's ``Gate``, or the store (``signoff report``)."""

    async def list_requests(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
    ) -> list[Request]: ...
    async def votes(self, request_id: str) -> list[Vote]: ...


async def load_report(
    store: Requests,
    settings: Settings,
    *,
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
    min_requests: int = DEFAULT_MIN_REQUESTS,
    groups: Collection[str] | None = None,
) -> Report:
    """The report over requests created in ``[since, until)``; tools need
    ``min_requests`` human decisions for an always-approved/denied signal. With
    ``groups`` (a console viewer's), only requests routed to one of those groups count:
    each viewer sees their own groups' review data, never another group's (SPEC §8).
    Raises ``StoreError``."""
    requests = await store.list_requests(since=since, until=until, limit=None)
    if groups is not None:
        mine = frozenset(groups)
        requests = [r for r in requests if mine.intersection(r.approver_groups)]
    votes: dict[str, list[Vote]] = {}
    for r in requests:
        if r.tier is Tier.CONFIRM:
            votes[r.id] = await store.votes(r.id)
    thresholds = Thresholds(
        fast_decision_floor=settings.console.fast_decision_floor, min_requests=min_requests
    )
    return build_report(requests, votes, now=now, since=since, until=until, thresholds=thresholds)


# ---------------------------------------------------------------- JSON


def _durations(d: Durations) -> dict[str, Any]:
    return {"count": d.count, "median_seconds": d.median, "p90_seconds": d.p90}


def _breakdown(b: Breakdown) -> dict[str, Any]:
    return {
        "key": b.key,
        "requests": b.requests,
        "approved": b.approved,
        "denied": b.denied,
        "expired": b.expired,
        "pending": b.pending,
        "approval_rate": b.approval_rate,
        "time_to_decision": _durations(b.time_to_decision),
        "fast_decisions": b.fast,
    }


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def to_json(report: Report) -> dict[str, Any]:
    th = report.thresholds
    return {
        "window": {"since": iso(report.since), "until": iso(report.until)},
        "generated_at": iso(report.generated_at),
        "thresholds": {
            "fast_decision_floor_seconds": th.fast_decision_floor.total_seconds(),
            "min_requests": th.min_requests,
            "backlog_min": th.backlog_min,
        },
        "requests": report.total,
        "by_tier": dict(report.by_tier),
        "by_outcome": dict(report.by_outcome),
        "by_tier_outcome": {k: dict(v) for k, v in report.by_tier_outcome.items()},
        "approval_rate": report.approval_rate,
        "time_to_decision": _durations(report.decisions),
        "tools": [_breakdown(b) for b in report.tools],
        "groups": [_breakdown(b) for b in report.groups],
        "approvers": [_breakdown(b) for b in report.approvers],
        "denial_reasons": [{"reason": r.reason, "count": r.count} for r in report.denial_reasons],
        "expiries": {"total": report.expiries, "by_tool": dict(report.expiries_by_tool)},
        "escalations": {
            "requests": report.escalations.requests,
            "steps": report.escalations.steps,
            "to_groups": report.escalations.to_groups,
        },
        "signals": [
            {"kind": s.kind, "subject": s.subject, "detail": s.detail, "suggestion": s.suggestion}
            for s in report.signals
        ],
        "histogram": [
            {"label": b.label, "lower_seconds": b.lower, "upper_seconds": b.upper, "count": b.count}
            for b in report.histogram
        ],
        "volume": {
            "bucket": report.bucket,
            "series": [{"start": iso(b.start), **dict(b.counts)} for b in report.volume],
        },
    }


# ---------------------------------------------------------------- text table


def pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.0f}%"


def secs(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.1f}s"
    if value < 7200:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.1f}h"


def _table(title: str, rows: tuple[Breakdown, ...], label: str) -> list[str]:
    if not rows:
        return [f"{title}: none", ""]
    width = max(len(label), *(len(b.key) for b in rows))
    out = [
        title,
        f"  {label:<{width}}  {'REQ':>5} {'APPR':>5} {'DENY':>5} {'EXP':>4} "
        f"{'RATE':>5} {'MEDIAN':>7} {'P90':>7}",
    ]
    for b in rows:
        t = b.time_to_decision
        out.append(
            f"  {b.key:<{width}}  {b.requests:>5} {b.approved:>5} {b.denied:>5} "
            f"{b.expired:>4} {pct(b.approval_rate):>5} {secs(t.median):>7} "
            f"{secs(t.p90):>7}"
        )
    return [*out, ""]


def to_table(report: Report) -> str:
    since = iso(report.since) or "the first request"
    lines = [
        f"signoff review report: {since} to {iso(report.until)}",
        f"requests: {report.total}   "
        + "   ".join(f"{k}: {v}" for k, v in sorted(report.by_tier.items())),
        "outcomes: " + "   ".join(f"{k}: {v}" for k, v in sorted(report.by_outcome.items())),
        f"human decisions: {report.decisions.count}   approval rate: "
        f"{pct(report.approval_rate)}   time to decision: median "
        f"{secs(report.decisions.median)}, p90 {secs(report.decisions.p90)}",
        f"expiries: {report.expiries}   escalated requests: {report.escalations.requests} "
        f"({report.escalations.steps} steps, {report.escalations.to_groups} to another group)",
        "",
    ]
    lines += _table("per tool (confirm tier)", report.tools, "TOOL")
    lines += _table("per group", report.groups, "GROUP")
    lines += _table("per approver (votes)", report.approvers, "APPROVER")
    lines.append("denial reasons:" if report.denial_reasons else "denial reasons: none")
    lines += [f"  {r.count:>4}  {r.reason}" for r in report.denial_reasons[:20]]
    lines.append("")
    lines.append("signals:" if report.signals else "signals: none")
    for s in report.signals:
        lines.append(f"  [{s.kind}] {s.subject}: {s.detail}")
        lines.append(f"      suggestion: {s.suggestion}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- charts and HTML


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    max_value: int
    baseline: float


def bar_chart(points: list[tuple[str, int]], *, width: int = 640, height: int = 200) -> Chart:
    """Geometry of a bar chart (the template draws it as inline SVG)."""
    top, bottom, left = 16.0, 36.0, 8.0
    plot_h = height - top - bottom
    peak = max((v for _, v in points), default=0)
    slot = (width - 2 * left) / max(len(points), 1)
    bars = []
    for i, (label, value) in enumerate(points):
        h = plot_h * value / peak if peak else 0.0
        bars.append(
            Bar(left + i * slot + slot * 0.1, top + plot_h - h, slot * 0.8, h, label, value)
        )
    return Chart(width, height, tuple(bars), peak, top + plot_h)


def charts(report: Report) -> dict[str, Chart]:
    fmt = {"hour": "%d %H:00", "day": "%m-%d", "week": "%m-%d"}[report.bucket]
    volume = [(b.start.strftime(fmt), b.total) for b in report.volume[-48:]]
    return {
        "histogram": bar_chart([(b.label, b.count) for b in report.histogram]),
        "volume": bar_chart(volume),
    }


def to_html(report: Report, templates: jinja2.Environment) -> str:
    """A standalone HTML page (inline CSS, inline SVG), for ``--format html``."""
    css = (resources.files("adapters.console") / "static" / "console.css").read_text("utf-8")
    return templates.get_template("report_file.html").render(
        report=report,
        charts=charts(report),
        css=css,
        pct=pct,
        secs=secs,
        iso=iso,
    )
