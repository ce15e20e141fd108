"""``bot.report`` on the seeded history of ``tests.report_history``, with hand-computed
expectations (the table in that module's docstring)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from adapters.console.reporting import to_json, to_table
from bot.domain import Status
from bot.report import Durations, Report, Thresholds, build_report, summarize
from tests.report_history import NOW, T0, UNTIL, history

TH = Thresholds(fast_decision_floor=timedelta(seconds=5), min_requests=3, backlog_min=3)


@pytest.fixture
def report() -> Report:
    requests, votes = history()
    return build_report(requests, votes, now=NOW, since=T0, until=UNTIL, thresholds=TH)


def test_summaries_use_the_middle_value_and_the_nearest_rank_p90() -> None:
    assert summarize([]) == Durations(0, None, None)
    assert summarize([5.0]) == Durations(1, 5.0, 5.0)
    assert summarize([4.0, 1.0, 3.0, 2.0]) == Durations(4, 2.5, 4.0)
    assert summarize(range(1, 11)) == Durations(10, 5.5, 9.0)
    assert summarize(range(1, 12)) == Durations(11, 6.0, 10.0)


def test_counts_by_tier_and_outcome(report: Report) -> None:
    assert report.total == 16
    assert report.by_tier == {"confirm": 14, "auto": 1, "block": 1}
    assert report.by_outcome == {"approved": 6, "denied": 5, "expired": 1, "pending": 4}
    assert report.by_tier_outcome["confirm"] == {
        "approved": 5,
        "denied": 4,
        "expired": 1,
        "pending": 4,
    }
    assert report.by_tier_outcome["block"] == {"denied": 1}


def test_overall_time_to_decision_and_approval_rate(report: Report) -> None:
    # human decisions: 3, 30, 40, 40, 40, 60, 90, 120, 600 seconds
    assert report.decisions == Durations(9, 40.0, 600.0)
    assert report.approval_rate == pytest.approx(5 / 9)


def test_per_tool(report: Report) -> None:
    tools = {b.key: b for b in report.tools}
    assert [b.key for b in report.tools] == [
        "ops.restart",
        "payments.transfer",
        "db.delete",
        "repos.force_push",
    ]
    pay = tools["payments.transfer"]
    assert (pay.requests, pay.approved, pay.denied, pay.expired, pay.pending) == (4, 2, 1, 1, 0)
    assert pay.approval_rate == pytest.approx(2 / 3)
    assert pay.time_to_decision == Durations(3, 120.0, 600.0)
    assert tools["db.delete"].approval_rate == 1.0
    assert tools["db.delete"].time_to_decision == Durations(3, 60.0, 90.0)
    assert tools["repos.force_push"].approval_rate == 0.0  # the block-tier call is not counted
    assert tools["repos.force_push"].requests == 3
    assert tools["ops.restart"].pending == 4
    assert tools["ops.restart"].approval_rate is None


def test_per_group_counts_escalation_groups_too(report: Report) -> None:
    groups = {b.key: b for b in report.groups}
    assert set(groups) == {"finance", "leads", "dba", "security", "ops"}
    assert groups["finance"].requests == 4
    assert (groups["leads"].requests, groups["leads"].expired) == (1, 1)
    assert groups["security"].denied == 3


def test_per_approver(report: Report) -> None:
    approvers = {b.key: b for b in report.approvers}
    alice = approvers["alice"]
    assert (alice.requests, alice.approved, alice.denied, alice.fast) == (2, 2, 0, 1)
    assert alice.time_to_decision == Durations(2, 61.5, 120.0)
    bob = approvers["bob"]
    assert (bob.requests, bob.approved, bob.denied, bob.fast) == (4, 3, 1, 0)
    assert bob.approval_rate == 0.75
    assert bob.time_to_decision == Durations(4, 75.0, 600.0)
    assert approvers["carol"].approval_rate == 0.0


def test_denial_reasons_expiries_and_escalations(report: Report) -> None:
    assert [(r.reason, r.count) for r in report.denial_reasons] == [
        ("not allowed", 2),
        ("Amount too high", 1),
        ("force-push to protected branches is never allowed", 1),
        ("risky", 1),
    ]
    assert report.expiries == 1
    assert report.expiries_by_tool == {"payments.transfer": 1}
    assert (
        report.escalations.requests,
        report.escalations.steps,
        report.escalations.to_groups,
    ) == (1, 2, 1)


def test_signals(report: Report) -> None:
    assert [(s.kind, s.subject) for s in report.signals] == [
        ("fast_approver", "alice"),
        ("always_approved", "db.delete"),
        ("always_denied", "repos.force_push"),
        ("growing_backlog", "ops"),
    ]
    fast, approved, denied, backlog = report.signals
    assert fast.detail.startswith("1 of 2 decisions within 5s")
    assert "auto tier" in approved.suggestion
    assert "block" in denied.suggestion
    assert "1 → 2 → 4" in backlog.detail


def test_signal_thresholds_are_respected() -> None:
    requests, votes = history()
    strict = Thresholds(fast_decision_floor=timedelta(seconds=2), min_requests=4, backlog_min=5)
    report = build_report(requests, votes, now=NOW, since=T0, until=UNTIL, thresholds=strict)
    assert report.signals == ()


def test_histogram_and_volume(report: Report) -> None:
    assert [(b.label, b.count) for b in report.histogram] == [
        ("< 5s", 1),
        ("5s-30s", 0),
        ("30s-1m", 4),
        ("1m-5m", 3),
        ("5m-15m", 1),
        ("15m-1h", 0),
        ("1h-4h", 0),
        (">= 4h", 0),
    ]
    assert report.bucket == "hour"
    assert [b.start for b in report.volume] == [T0 + timedelta(hours=h) for h in range(3)]
    assert [dict(b.counts) for b in report.volume] == [
        {"approved": 3, "denied": 2, "expired": 1, "pending": 1},
        {"approved": 3, "pending": 1, "denied": 2},
        {"denied": 1, "pending": 2},
    ]


def test_a_denial_without_votes_is_not_a_human_decision() -> None:
    requests, votes = history()
    suspended = replace(
        requests[-1],
        id="x1",
        status=Status.DENIED,
        decided_at=T0,
        reason="agent billing-agent was suspended",
    )
    report = build_report(
        [*requests, suspended], votes, now=NOW, since=T0, until=UNTIL, thresholds=TH
    )
    assert report.decisions.count == 9
    assert report.by_outcome["denied"] == 6


def test_empty_window() -> None:
    report = build_report([], {}, now=NOW)
    assert report.total == 0
    assert report.decisions == Durations(0, None, None)
    assert report.signals == ()
    assert "signals: none" in to_table(report)


def test_renderers_carry_the_same_figures(report: Report) -> None:
    data = to_json(report)
    assert data["requests"] == 16
    assert data["time_to_decision"] == {"count": 9, "median_seconds": 40.0, "p90_seconds": 600.0}
    assert data["window"] == {"since": "2026-11-01T00:00:00Z", "until": "2026-11-01T03:00:00Z"}
    assert [s["kind"] for s in data["signals"]][-1] == "growing_backlog"
    table = to_table(report)
    assert "payments.transfer" in table and "67%" in table
    assert "[always_denied] repos.force_push" in table
