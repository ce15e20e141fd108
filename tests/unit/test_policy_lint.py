"""`signoff policy check` warnings (bot.policy.lint): conditions an agent can sidestep."""

from __future__ import annotations

from pathlib import Path

from bot.policy.lint import lint_policy, unsafe_comparisons
from bot.policy.loader import load_sources

HEAD = """
apiVersion: signoff/v1
kind: ToolPolicy
groups:
  dba: {console: {users: [bob]}}
rules:
"""


def lint(rules: str, cases: list[Path] | None = None) -> list[str]:
    return lint_policy(load_sources([("p.yaml", HEAD + rules)]), cases or [])


def test_unguarded_string_comparisons_in_auto_rules_warn() -> None:
    found = lint(
        """
  - {name: a, tool: db.execute, tier: auto, when: 'args.schema == "analytics"'}
  - {name: b, tool: db.query, tier: notify, approvers: {groups: [dba]},
     when: 'args.schema in ["a", "b"]'}
  - {name: c, tool: db.read, tier: auto, when: '"x" == context.tenant'}
"""
    )
    assert len(found) == 3
    assert "p.yaml:8: warning: auto rule 'a' compares `args.schema == …`" in found[0]
    assert "notify rule 'b' compares `args.schema in …`" in found[1]
    assert "`context.tenant == …`" in found[2]


def test_guarded_folded_and_strict_rules_do_not_warn() -> None:
    assert (
        lint(
            """
  - {name: a, tool: db.execute, tier: auto, when: 'fold(args.schema) == "analytics"'}
  - {name: b, tool: db.query, tier: auto, when: 'is_string(args.s) && args.s == "x"'}
  - {name: c, tool: db.delete, tier: confirm, approvers: {groups: [dba]},
     when: 'args.schema == "production"'}
  - {name: d, tool: mail.send, tier: auto, when: 'email(args.from) in ["a@b.co"]'}
  - {name: e, tool: pay.send, tier: auto, when: 'args.amount < 10'}
"""
        )
        == []
    )


def test_not_equal_in_auto_rules_warns() -> None:
    found = lint(
        """
  - {name: a, tool: db.execute, tier: auto, when: 'fold(args.schema) != "production"'}
"""
    )
    assert found == [
        "p.yaml:8: warning: auto rule 'a' uses `!=`: any unexpected value is 'not equal' and so "
        "allowed; say what is allowed instead"
    ]


def test_a_glob_without_condition_shadowing_a_later_rule_warns() -> None:
    found = lint(
        """
  - {name: reads, tool: "*.read", tier: auto}
  - {name: crm-read, tool: crm.read, tier: block, reason: never}
  - {name: crm-any, tool: "crm.*.read", tier: block, reason: never}
  - {name: conditional, tool: "db.*", tier: auto, when: 'is_string(args.x)'}
  - {name: db-drop, tool: db.drop, tier: block, reason: never}
"""
    )
    assert len(found) == 2
    assert "rule 'crm-read' never matches: rule 'reads'" in found[0]
    assert "rule 'crm-any' never matches" in found[1]


def test_rules_no_case_ends_at_warn(tmp_path: Path) -> None:
    cases = tmp_path / "p.cases.yaml"
    cases.write_text("- {tool: db.read, expect: {rule: r1}}\n", encoding="utf-8")
    found = lint(
        """
  - {name: r1, tool: db.read, tier: auto}
  - {name: r2, tool: db.write, tier: block, reason: never}
""",
        [cases],
    )
    assert found == [f"p.yaml:9: warning: no case in {cases} ends at rule 'r2'"]


def test_session_labels_for_unknown_tools_and_undefined_label_names_warn() -> None:
    found = lint_policy(
        load_sources(
            [
                (
                    "p.yaml",
                    HEAD.replace(
                        "rules:",
                        """sessions:
  labels:
    external_comms: {tools: [emial.send]}
    private_data: {tools: ["crm.*"]}
rules:""",
                    )
                    + """
  - {name: crm, tool: crm.read, tier: auto}
  - {name: trifecta, tool: "*", tier: confirm, approvers: {groups: [dba]},
     when: '"external_coms" in call.labels && "private_data" in session.labels'}
""",
                )
            ]
        ),
        [],
    )
    assert len(found) == 2
    assert "label 'external_comms': tool 'emial.send' matches no tool any rule names" in found[0]
    assert "tests label 'external_coms', which sessions.labels does not define" in found[1]


def test_unsafe_comparisons_reads_operands_next_to_the_operator() -> None:
    assert unsafe_comparisons('args.a.b == "x" || fold(args.c) == "y"') == ["args.a.b == …"]
    assert unsafe_comparisons('args["a"] in ["x"]') == ['args["a"] in …']
    assert unsafe_comparisons("args.n == 3") == []
