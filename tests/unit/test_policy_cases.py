"""The shipped example policy, table cases (`signoff policy test`) and `policy explain`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.domain import Requirement, Tier, ToolCall
from bot.errors import PolicyError
from bot.policy.cases import explain, run_cases, to_agent
from bot.policy.evaluator import evaluate
from bot.policy.lint import lint_policy
from bot.policy.loader import check_policy, load_policy
from bot.policy.model import Policy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "policies" / "example.yaml"
CASES = ROOT / "policies" / "example.cases.yaml"
NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def example() -> Policy:
    return load_policy([EXAMPLE])


def test_the_example_policy_is_clean(example: Policy) -> None:
    assert check_policy([ROOT / "policies"]) == []
    assert example.version == "2026-11-21"
    assert example.unknown_tool is Tier.CONFIRM
    assert {"finance", "finance-leads", "dba", "exec-ops", "security"} <= set(example.groups)
    finance = example.groups["finance"]
    assert finance.console is not None and finance.members == ("alice",)
    assert finance.slack is not None and finance.slack.channel == "C0FINANCE"
    assert example.groups["dba"].members == ("bob",)
    assert example.groups["finance-leads"].members == ("carol",)
    assert example.people.warnings == ()  # every approver is a person


def test_large_transfer_escalation_ladder(example: Policy) -> None:
    rule = next(rule for rule in example.rules if rule.name == "large-transfer")
    ladder = [
        (step.after.total_seconds() / 60, step.remind, step.to, step.page, step.deny)
        for step in rule.escalation
    ]
    assert ladder == [
        (10, True, None, False, False),
        (15, False, "finance-leads", True, False),
        (30, False, None, False, True),
    ]
    assert rule.requirement == Requirement(groups=("finance",), quorum=1)


def test_shipped_cases_all_pass(example: Policy) -> None:
    report = run_cases(example, CASES)
    assert report.failures == ()
    assert report.ok and report.total == report.passed >= 20


def test_mismatches_are_reported_with_the_case_line(example: Policy, tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "- tool: payments.transfer\n"
        "  arguments: {amount: 5}\n"
        "  expect: {tier: auto, rule: small-transfer}\n"
        "- name: wrong on purpose\n"
        "  tool: payments.transfer\n"
        "  arguments: {amount: 50000}\n"
        "  expect: {tier: auto}\n"
        "- name: wrong rule\n"
        "  tool: zz.top\n"
        "  arguments: {}\n"
        "  rule: nothing\n"
    )
    report = run_cases(example, cases)
    assert (report.total, report.passed) == (3, 1)
    assert not report.ok
    assert report.failures[0].startswith(
        f"{cases}:4: case 'wrong on purpose': expected tier auto, got confirm"
    )
    assert report.failures[1].startswith(
        f"{cases}:8: case 'wrong rule': expected rule 'nothing', got None"
    )


def test_json_cases_are_accepted(example: Policy, tmp_path: Path) -> None:
    cases = tmp_path / "cases.json"
    cases.write_text(
        json.dumps(
            {
                "cases": [
                    {
                        "tool": "email.send",
                        "arguments": {"from": "cfo@example.com"},
                        "context": {"session_id": "s-1"},
                        "agent": {"id": "a", "labels": {"team": "x"}},
                        "expect": {"tier": "confirm", "rule": "executive-mail"},
                    }
                ]
            }
        )
    )
    assert run_cases(example, cases).ok


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("- arguments: {}\n  tier: auto\n", ":1: case is missing 'tool'"),
        ("- tool: t\n  tier: sometimes\n", ":1: case expects unknown tier 'sometimes'"),
        ("- tool: t\n", ":1: case expects nothing"),
        ("- tool: t\n  tier: auto\n  arguments: [1]\n", ":3: case arguments must be a mapping"),
        ("- tool: t\n  tier: auto\n  color: red\n", ":3: unknown key 'color' in case"),
        ("- tool: t\n  tier: auto\n  agent: [1]\n", ":3: case agent must be an id"),
        ("tool: t\n", ":1: unknown key 'tool' in cases file"),
    ],
)
def test_malformed_cases_raise_with_lines(
    example: Policy, tmp_path: Path, body: str, expected: str
) -> None:
    cases = tmp_path / "c.yaml"
    cases.write_text(body)
    with pytest.raises(PolicyError) as caught:
        run_cases(example, cases)
    assert any(expected in detail for detail in caught.value.details), caught.value.details


def test_explain_says_what_a_call_requires(example: Policy) -> None:
    text = explain(example, "payments.transfer", {"amount": 25000}, "billing-agent")
    assert f"policy:   {example.digest} (version 2026-11-21)" in text
    assert "rule:     large-transfer (" in text
    assert "tier:     confirm" in text
    assert "when `args.amount >= 10000` is true → MATCH" in text
    assert "approvers: 1 distinct human(s) from any of finance" in text
    assert "after 15m: escalate to finance-leads, page" in text
    assert "after 30m: deny" in text
    small = explain(example, "payments.transfer", {"amount": 5})
    assert "rate limit: 20 per 1h per agent" in small and "tier:     auto" in small
    blocked = explain(example, "repos.force_push", {"branch": "main"})
    assert "reason:    force-push to protected branches is never allowed" in blocked
    unknown = explain(example, "infra.reboot", {})
    assert "rule:     (none matched)" in unknown and "any of security" in unknown
    errored = explain(example, "payments.transfer", {})
    assert "note:      decided by a condition error" in errored


def test_to_agent_accepts_ids_and_mappings() -> None:
    assert to_agent("a").id == "a"
    agent = to_agent({"id": "b", "artifact_digest": "sha256:x", "labels": {"team": 1}})
    assert (agent.id, agent.artifact_digest, dict(agent.labels)) == ("b", "sha256:x", {"team": "1"})


def test_report_renders_failures_then_a_summary() -> None:
    from bot.policy.cases import CaseReport

    assert CaseReport(2, 2, ()).render() == "ok: 2/2 case(s) passed"
    failed = CaseReport(2, 1, ("c.yaml:3: case 'x': expected tier auto, got block",))
    assert failed.render().splitlines() == [
        "c.yaml:3: case 'x': expected tier auto, got block",
        "FAILED: 1/2 case(s) passed",
    ]


# --- issue 16: tricks that sidestepped the old example --------------------------------------

TRICKS = [
    ("db.delete", {"schema": ["production"], "table": "users", "where": "id = 1"}),
    ("db.delete", {"schema": "PRODUCTION", "table": "users", "where": "id = 1"}),
    ("db.delete", {"schema": " production", "table": "users"}),
    ("db.execute", {"schema": "analytics", "statement": "/**/DROP TABLE production.users"}),
    ("db.execute", {"schema": "analytics", "statement": "delete from production.users where a=1"}),
    ("db.execute", {"schema": "analytics", "statement": "select 1; drop table users"}),
    ("db.execute", {"schema": ["production"], "statement": "select 1"}),
    ("email.send", {"from": "CEO@example.com", "to": ["board@example.com"]}),
    ("email.send", {"from": "Boss <ceo@EXAMPLE.com>"}),
    ("email.send", {"from": ["ceo@example.com"]}),
    ("repos.force_push", {"branch": "MAIN"}),
    ("payments.transfer", {"amount": "25000"}),
]


@pytest.mark.parametrize(("tool", "arguments"), TRICKS)
def test_every_known_trick_lands_in_confirm_or_block(
    example: Policy, tool: str, arguments: dict[str, object]
) -> None:
    result = evaluate(example, ToolCall(tool=tool, arguments=arguments), to_agent(None), NOW)
    assert result.tier in (Tier.CONFIRM, Tier.BLOCK), result.trace


def test_every_trick_ships_as_a_policy_test_case() -> None:
    shipped = yaml.safe_load(CASES.read_text(encoding="utf-8"))
    pairs = [(case["tool"], case.get("arguments")) for case in shipped]
    issue: list[tuple[str, dict[str, Any]]] = [
        ("db.delete", {"schema": ["production"]}),
        ("db.delete", {"schema": "PRODUCTION"}),
        ("db.execute", {"schema": "analytics", "statement": "/**/DROP TABLE production.users"}),
        ("email.send", {"from": "CEO@example.com"}),
    ]
    for tool, arguments in issue:
        assert any(
            t == tool and a is not None and a.items() >= arguments.items() for t, a in pairs
        ), (tool, arguments)


def test_the_example_cases_cover_every_rule_and_the_example_lints_clean(example: Policy) -> None:
    assert lint_policy(example, [CASES]) == []
    assert run_cases(example, CASES).covered == {rule.name for rule in example.rules}
