"""Loading policies: every problem reported with its file:line, all at once; digests."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from bot.domain import EscalationStep, Requirement, Tier
from bot.errors import PolicyError
from bot.policy.loader import check_policy, load_policy, load_sources

HEAD = """\
apiVersion: signoff/v1
kind: ToolPolicy
groups:
  finance: {console: {users: [alice]}}
  leads: {slack: {channel: C0LEADS, users: [U0CAROL]}}
"""


RULE = "rules:\n  - name: r\n    tool: t\n"
FIN = "    approvers: {groups: [finance]}\n"


def write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return path


def problems_of(tmp_path: Path, body: str, name: str = "p.yaml") -> list[str]:
    path = write(tmp_path, name, body)
    return check_policy([path])


def only(problems: list[str]) -> str:
    assert len(problems) == 1, problems
    return problems[0]


def test_a_valid_policy_loads_with_effective_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        HEAD
        + """\
defaults: {unknown_tool: block, sla: 20m}
rules:
  - name: big
    tool: payments.*
    when: args.amount >= 10
    tier: confirm
    approvers: {groups: [finance], quorum: 2, all_of: [leads]}
    escalation:
      - {after: 5m, remind: true}
      - {after: 10m, to: leads, page: true}
  - name: small
    tool: payments.transfer
    tier: auto
    rate_limit: {max: 3, per: 1h}
""",
    )
    policy = load_policy([path])
    big, small = policy.rules
    assert big.requirement == Requirement(groups=("finance",), quorum=2, all_of=("leads",))
    assert big.sla == timedelta(minutes=20)  # from defaults
    assert big.escalation[-1] == EscalationStep(after=timedelta(minutes=20), deny=True)
    assert big.deadline_offset == timedelta(minutes=20)
    assert big.source == f"{path}:8"
    assert small.rate_limit is not None and small.rate_limit.key == "agent"
    assert policy.unknown_tool is Tier.BLOCK
    assert policy.digest.startswith("sha256:") and len(policy.digest) == 7 + 64
    assert policy.files == (str(path),)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            RULE + "    tier: auto\n    colour: red\n",
            ":10: unknown key 'colour'",
        ),
        (RULE + "    tier: maybe\n", ":9: tier must be one of"),
        (
            RULE + "    tier: auto\n    when: 'args.x +'\n",
            ":10: CEL: Syntax",
        ),
        (
            RULE + "    tier: auto\n    when: 'foo == 1'\n",
            ":10: CEL: undeclared",
        ),
        (
            RULE + "    tier: auto\n    when: 'args.x + 1'\n",
            ":10: condition must be a bool",
        ),
        (
            RULE + "    tier: confirm\n",
            ":7: rule 'r' is confirm and must name approvers",
        ),
        (
            RULE + "    tier: block\n",
            ":7: rule 'r' is block and must give a reason",
        ),
        ("rules:\n  - name: r\n    tier: auto\n", ":7: rule is missing 'tool'"),
        (
            RULE + "    tier: confirm\n    approvers: {groups: [nobody]}\n",
            ":10: approvers.groups names unknown group 'nobody'",
        ),
        (
            RULE + "    tier: confirm\n    approvers: {all_of: [x]}\n",
            ":10: approvers.all_of names unknown group 'x'",
        ),
        (
            RULE + "    tier: confirm\n    approvers: {groups: [finance], quorum: 0}\n",
            ":10: approvers.quorum must be at least 1",
        ),
        (
            RULE + "    tier: confirm\n" + FIN + "    sla: 15\n",
            ":11: sla must be a duration",
        ),
        (
            RULE + "    tier: confirm\n" + FIN + "    sla: 0s\n",
            ":11: sla must be longer than zero",
        ),
        (
            RULE + "    tier: block\n    reason: never\n    rate_limit: {max: 1, per: 1h}\n",
            ":11: rule 'r': `rate_limit` only applies to auto/notify rules, not block",
        ),
        (
            RULE + "    tier: auto\n    rate_limit: {max: 1, per: 1h, key: ip}\n",
            ":10: rate_limit.key must be one of",
        ),
        (
            "defaults: {unknown_tool: auto}\n",
            ":6: defaults.unknown_tool must be one of confirm | block",
        ),
        (
            "defaults: {unknown_tool: notify}\n",
            ":6: defaults.unknown_tool must be one of confirm | block",
        ),
        (
            RULE + "    tier: auto\n    tier: block\n",
            ":10: duplicate key 'tier'",
        ),
        ("rules: {a: 1}\n", ":6: rules must be a list"),
        (
            "  x: {members: [a], console: {users: [a]}, email: {to: b}}\n",
            ":6: unknown key 'to' in group 'x' email",
        ),
        ("  v: {console: {users: [a]}, email: {}}\n", ":6: group 'v' email needs members"),
        (
            "  x: {slack: {channel: C1}}\n",
            ":6: group 'x' slack needs members, users or a usergroup",
        ),
        ("  y: {}\n", ":6: group 'y' has no slack, teams, console or email route"),
        (
            "  z:\n    teams: {service_url: ftp://x, conversation_id: c, users: [u]}\n",
            ":7: group 'z' teams service_url must be an http(s) URL",
        ),
        ("  bad name: {console: {users: [a]}}\n", ":6: group name 'bad name' may only use"),
        ("  w: {console: {users: []}}\n", ":6: group 'w' console needs at least one user"),
        (
            RULE + "    tier: confirm\n" + FIN + "    editable: yes please\n",
            ":11: editable must be true or false",
        ),
        (
            RULE + "    tier: confirm\n" + FIN + "    step_up: sms\n",
            ":11: step_up must be one of webauthn",
        ),
        (
            RULE + "    tier: auto\n    editable: true\n",
            ":10: rule 'r': `editable` only applies to confirm rules, not auto",
        ),
    ],
)
def test_each_problem_is_reported_at_its_line(tmp_path: Path, body: str, expected: str) -> None:
    problem = only(problems_of(tmp_path, HEAD + body))
    assert problem.startswith(str(tmp_path / "p.yaml") + ":")
    assert expected in problem


def test_all_problems_are_collected_in_line_order(tmp_path: Path) -> None:
    body = HEAD + textwrap.dedent(
        """\
        rules:
          - name: a
            tool: t
            tier: nope
          - name: b
            tool: t
            tier: auto
            when: 'nope == 1'
          - name: a
            tool: u
            tier: auto
        """
    )
    found = problems_of(tmp_path, body)
    assert [line.split(":")[1] for line in found] == ["9", "13", "14"]
    assert "duplicate rule name 'a'" in found[2]
    with pytest.raises(PolicyError) as caught:
        load_policy([tmp_path / "p.yaml"])
    assert caught.value.message == "policy has 3 problem(s)"
    assert caught.value.details == tuple(found)
    assert "(and 2 more)" in caught.value.diagnostics()


def test_yaml_syntax_errors_name_their_line(tmp_path: Path) -> None:
    problem = only(
        problems_of(tmp_path, "apiVersion: signoff/v1\nkind: ToolPolicy\nrules: [\n  {a: 1\n")
    )
    assert ":5: YAML syntax error" in problem


def test_wrong_api_version_and_kind(tmp_path: Path) -> None:
    found = problems_of(tmp_path, "apiVersion: signoff/v2\nkind: Policy\n")
    assert ":1: apiVersion must be signoff/v1" in found[0]
    assert ":2: kind must be ToolPolicy" in found[1]


def test_escalation_rules(tmp_path: Path) -> None:
    rule = RULE + "    tier: confirm\n    approvers: {groups: [finance]}\n"
    allow = only(
        problems_of(
            tmp_path, HEAD + rule + "    escalation:\n      - {after: 30m, action: allow}\n"
        )
    )
    assert ":12: escalation action 'allow' is not allowed" in allow
    order = only(
        problems_of(
            tmp_path,
            HEAD
            + rule
            + "    escalation:\n"
            + "      - {after: 10m, remind: true}\n      - {after: 5m, page: true}\n",
        )
    )
    assert ":13: escalation steps must be ordered by `after`" in order
    after_deny = only(
        problems_of(
            tmp_path,
            HEAD
            + rule
            + "    escalation:\n"
            + "      - {after: 10m, action: deny}\n      - {after: 20m, page: true}\n",
        )
    )
    assert ":13: the deny step must be the last" in after_deny
    late = only(
        problems_of(
            tmp_path,
            HEAD + rule + "    sla: 15m\n    escalation:\n      - {after: 20m, page: true}\n",
        )
    )
    assert ":13: escalation step at 20m would never run" in late
    unknown = only(
        problems_of(tmp_path, HEAD + rule + "    escalation:\n      - {after: 5m, to: ghosts}\n")
    )
    assert ":12: escalation `to` names unknown group 'ghosts'" in unknown
    idle = only(problems_of(tmp_path, HEAD + rule + "    escalation:\n      - {after: 5m}\n"))
    assert ":12: escalation step does nothing" in idle


def test_explicit_deny_step_sets_the_deadline(tmp_path: Path) -> None:
    body = HEAD + textwrap.dedent(
        """\
        rules:
          - name: r
            tool: t
            tier: confirm
            approvers: {groups: [finance]}
            sla: 15m
            escalation:
              - {after: 15m, to: leads, page: true}
              - {after: 30m, action: deny}
        """
    )
    (rule,) = load_policy([write(tmp_path, "p.yaml", body)]).rules
    assert rule.sla == timedelta(minutes=15)
    assert [step.deny for step in rule.escalation] == [False, True]
    assert rule.deadline_offset == timedelta(minutes=30)


def test_duplicate_groups_across_files_name_both_places(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", HEAD)
    write(
        tmp_path,
        "sub/b.yaml",
        "apiVersion: signoff/v1\nkind: ToolPolicy\ngroups:\n  finance: {console: {users: [x]}}\n",
    )
    problem = only(check_policy([tmp_path]))
    assert problem.startswith(
        f"{tmp_path / 'sub' / 'b.yaml'}:4: group 'finance' is already defined at "
    )
    assert problem.endswith(f"{tmp_path / 'a.yaml'}:4")


def test_defaults_may_be_set_once_and_groups_are_shared(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", HEAD + "defaults: {sla: 5m}\n")
    write(
        tmp_path,
        "b.yml",
        "apiVersion: signoff/v1\nkind: ToolPolicy\ndefaults: {sla: 6m}\n---\n"
        "apiVersion: signoff/v1\nkind: ToolPolicy\nrules:\n"
        "  - {name: r, tool: t, tier: notify, approvers: {groups: [leads]}}\n",
    )
    problem = only(check_policy([tmp_path]))
    assert f"b.yml:3: defaults.sla is already set at {tmp_path / 'a.yaml'}:6" in problem
    (tmp_path / "b.yml").write_text(
        (tmp_path / "b.yml").read_text().replace("defaults: {sla: 6m}\n", "")
    )
    policy = load_policy([tmp_path])
    assert policy.rules[0].requirement.groups == ("leads",)
    assert policy.default_sla == timedelta(minutes=5)


def test_missing_paths_and_empty_folders(tmp_path: Path) -> None:
    assert check_policy([tmp_path / "nope.yaml"]) == [
        f"{tmp_path / 'nope.yaml'}:1: no such file or folder"
    ]
    (tmp_path / "empty").mkdir()
    assert "holds no *.yaml" in only(check_policy([tmp_path / "empty"]))


def test_unknown_tool_confirm_needs_somebody_to_approve(tmp_path: Path) -> None:
    problem = only(problems_of(tmp_path, "apiVersion: signoff/v1\nkind: ToolPolicy\n"))
    assert "no approver groups are defined" in problem
    assert (
        check_policy(
            [
                write(
                    tmp_path,
                    "q.yaml",
                    "apiVersion: signoff/v1\nkind: ToolPolicy\ndefaults: {unknown_tool: block}\n",
                )
            ]
        )
        == []
    )


def test_unknown_tool_defaults_to_all_groups_or_default_approvers() -> None:
    assert load_sources([("a", HEAD)]).default_approvers == Requirement(groups=("finance", "leads"))
    with_default = load_sources([("a", HEAD + "defaults: {approvers: {groups: [leads]}}\n")])
    assert with_default.default_approvers == Requirement(groups=("leads",))


def test_version_and_name_are_joined_across_documents() -> None:
    doc = "apiVersion: signoff/v1\nkind: ToolPolicy\nmetadata: {{name: {n}, version: {v}}}\n"
    policy = load_sources(
        [
            ("a", HEAD + "metadata: {name: one, version: '1'}\n"),
            ("b", doc.format(n="two", v="2026-11-21")),
        ]
    )
    assert policy.version == "1+2026-11-21"  # the unquoted date is taken as written
    assert policy.name == "one+two"


def test_digest_ignores_comments_whitespace_and_key_order() -> None:
    rule = "rules:\n  - {name: r, tool: t, tier: auto, when: 'args.a == 1'}\n"
    base = load_sources([("a", HEAD + rule)]).digest
    reordered = HEAD.replace(
        "apiVersion: signoff/v1\nkind: ToolPolicy\n", "kind: ToolPolicy\napiVersion: signoff/v1\n"
    )
    block_style = (
        "rules:\n  # a comment\n  - tier: auto\n"
        '    when: "args.a == 1"\n    tool: t\n    name: r\n\n'
    )
    assert load_sources([("a", reordered + rule)]).digest == base
    assert load_sources([("elsewhere.yaml", HEAD + block_style)]).digest == base
    changed = load_sources([("a", HEAD + rule.replace("args.a == 1", "args.a == 2"))]).digest
    assert changed != base


def test_digest_depends_on_file_order() -> None:
    a = ("a", HEAD)
    b = (
        "b",
        "apiVersion: signoff/v1\nkind: ToolPolicy\nrules:\n  - {name: r, tool: t, tier: auto}\n",
    )
    assert load_sources([a, b]).digest != load_sources([b, a]).digest


def test_non_string_keys_and_yaml_tags_are_problems() -> None:
    with pytest.raises(PolicyError) as caught:
        load_sources([("a", HEAD + "rules:\n  - {1: x}\n")])
    assert caught.value.details == ("a:7: mapping keys must be strings",)
    with pytest.raises(PolicyError) as caught:
        load_sources([("a", HEAD + "metadata: {name: !custom x}\n")])
    assert "a:6: unsupported YAML tag !custom" in caught.value.details[0]


def test_approver_options_load_on_confirm_rules(tmp_path: Path) -> None:
    body = HEAD + RULE + "    tier: confirm\n" + FIN + "    editable: true\n    step_up: webauthn\n"
    (rule,) = load_policy([write(tmp_path, "p.yaml", body)]).rules
    assert rule.editable and rule.step_up == "webauthn"
