"""The evaluator: first match wins, errors only make a call stricter, unknown tools never auto."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain import Agent, Requirement, Tier, ToolCall
from bot.policy.evaluator import evaluate, rate_key, window_start
from bot.policy.loader import load_sources
from bot.policy.model import Policy

NOW = datetime(2026, 11, 21, 10, 7, 31, tzinfo=UTC)
AGENT = Agent(id="billing", token_hash="h", created_at=NOW, labels={"team": "payments"})
HEAD = """\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {version: "7"}
groups:
  finance: {console: {users: [alice]}}
defaults: {unknown_tool: confirm, sla: 10m}
rules:
"""
EXTRA = {
    "confirm": "    approvers: {groups: [finance]}\n",
    "notify": "    approvers: {groups: [finance]}\n",
}


def policy_of(*rules: tuple[str, str, str, str | None], unknown: str = "confirm") -> Policy:
    text = HEAD.replace("unknown_tool: confirm", f"unknown_tool: {unknown}")
    for name, tool, tier, when in rules:
        text += f"  - name: {name}\n    tool: '{tool}'\n    tier: {tier}\n"
        if when is not None:
            text += f"    when: '{when}'\n"
        text += EXTRA.get(tier, "")
        if tier == "block":
            text += "    reason: blocked\n"
    return load_sources([("p.yaml", text)])


def run(policy: Policy, tool: str, **args: Any) -> Any:
    return evaluate(policy, ToolCall(tool=tool, arguments=args), AGENT, NOW)


def test_first_matching_rule_wins_in_order() -> None:
    policy = policy_of(
        ("big", "pay.transfer", "confirm", "args.amount >= 100"),
        ("any-pay", "pay.*", "notify", None),
        ("small", "pay.transfer", "auto", None),
    )
    big = run(policy, "pay.transfer", amount=500)
    assert (big.tier, big.rule.name if big.rule else None) == (Tier.CONFIRM, "big")
    assert big.requirement == Requirement(groups=("finance",))
    assert big.sla == timedelta(minutes=10) and big.deadline_offset == timedelta(minutes=10)
    assert big.escalation[-1].deny
    assert big.policy.digest == policy.digest and big.policy.rule == "big"
    assert big.policy.version == "7"
    small = run(policy, "pay.transfer", amount=5)
    assert small.rule is not None and small.rule.name == "any-pay"  # earlier than "small"
    assert small.tier is Tier.NOTIFY and small.sla is None and small.escalation == ()
    assert len(small.trace) == 2 and "is false → no match" in small.trace[0]


def test_globs_use_fnmatch_semantics_and_are_case_sensitive() -> None:
    policy = policy_of(("reads", "*.read", "auto", None), ("one", "db.?", "auto", None))
    assert run(policy, "crm.contacts.read").tier is Tier.AUTO  # * crosses dots
    assert run(policy, "db.x").tier is Tier.AUTO
    assert run(policy, "db.xy").rule is None
    assert run(policy, "CRM.READ").rule is None


def test_a_condition_error_matches_a_confirm_rule() -> None:
    policy = policy_of(
        ("big", "pay.transfer", "confirm", "args.amount >= 100"),
        ("rest", "pay.transfer", "auto", None),
    )
    missing = run(policy, "pay.transfer")
    wrong_type = run(policy, "pay.transfer", amount="lots")
    for result in (missing, wrong_type):
        assert result.tier is Tier.CONFIRM and result.rule is not None
        assert result.rule.name == "big"
        assert "counts as MATCH" in result.trace[-1]
        assert result.error is not None
    assert "Key not found" in (missing.error or "")


def test_a_condition_error_never_matches_an_auto_rule() -> None:
    policy = policy_of(
        ("small", "pay.transfer", "auto", "args.amount < 100"),
        ("log", "pay.transfer", "notify", 'args.currency == "USD"'),
    )
    result = run(policy, "pay.transfer", currency="USD")  # no amount: small errors
    assert result.tier is Tier.NOTIFY and result.rule and result.rule.name == "log"
    assert "counts as no match" in result.trace[0]
    nothing = run(policy, "pay.transfer", amount="x", currency=3)
    assert nothing.rule is None and nothing.tier is Tier.CONFIRM
    assert nothing.error is None  # the errors were skipped, the default decided


def test_a_block_rule_that_errors_blocks() -> None:
    policy = policy_of(("protect", "git.push", "block", 'args.branch.startsWith("main")'))
    result = run(policy, "git.push", branch=7)
    assert result.tier is Tier.BLOCK and result.reason == "blocked"


def test_unknown_tools_use_the_defaults() -> None:
    confirm = run(policy_of(("x", "a.b", "auto", None)), "zzz")
    assert confirm.tier is Tier.CONFIRM and confirm.rule is None
    assert confirm.requirement == Requirement(groups=("finance",))
    assert confirm.sla == timedelta(minutes=10) and confirm.escalation[-1].deny
    assert confirm.trace == ("no rule matches tool 'zzz' → defaults.unknown_tool: confirm",)
    assert confirm.policy.rule is None
    block = run(policy_of(("x", "a.b", "auto", None), unknown="block"), "zzz")
    assert block.tier is Tier.BLOCK and block.reason and "zzz" in block.reason
    assert block.requirement.all_groups == ()


def test_agent_context_and_non_dict_mappings_reach_cel() -> None:
    policy = policy_of(
        ("team", "t", "auto", 'agent.labels.team == "payments" && context.ticket == "T1"'),
    )
    call = ToolCall(
        tool="t", arguments=MappingProxyType({"a": 1}), context=MappingProxyType({"ticket": "T1"})
    )
    assert evaluate(policy, call, AGENT, NOW).tier is Tier.AUTO
    other = Agent(id="x", token_hash="h", created_at=NOW, labels=MappingProxyType({"team": "ops"}))
    assert evaluate(policy, call, other, NOW).rule is None


def test_candidate_cache_is_per_tool_and_bounded() -> None:
    policy = policy_of(("a", "a.*", "auto", None), ("b", "*", "auto", None))
    assert [r.name for r in policy.candidates("a.x")] == ["a", "b"]
    assert [r.name for r in policy.candidates("q")] == ["b"]
    for index in range(5000):
        policy.candidates(f"tool{index}")
    assert len(policy._candidates) <= 4096
    assert run(policy, "a.x").rule is not None


def test_rate_keys_and_windows() -> None:
    policy = load_sources(
        [
            (
                "p",
                HEAD
                + "".join(
                    f"  - {{name: r-{key}, tool: t{key}, tier: auto, rate_limit: "
                    f"{{max: 1, per: 1h, key: {key}}}}}\n"
                    for key in ("agent", "tool", "agent_tool", "global")
                ),
            )
        ]
    )
    keys = [rate_key(rule, "ag", "pay.x") for rule in policy.rules]
    assert keys == [
        "r-agent|agent=ag",
        "r-tool|tool=pay.x",
        "r-agent_tool|agent=ag|tool=pay.x",
        "r-global|global",
    ]
    assert window_start(NOW, timedelta(hours=1)) == datetime(2026, 11, 21, 10, tzinfo=UTC)
    assert window_start(NOW, timedelta(minutes=15)) == datetime(2026, 11, 21, 10, tzinfo=UTC)
    assert window_start(NOW, timedelta(seconds=30)) == datetime(2026, 11, 21, 10, 7, 30, tzinfo=UTC)
    assert window_start(NOW, timedelta(days=1)) == datetime(2026, 11, 21, tzinfo=UTC)


# --- properties --------------------------------------------------------------------------

GLOBS = ["a.b", "a.*", "*", "b.?", "c.x"]
TOOLS = ["a.b", "a.c", "b.x", "c.x", "d"]
CONDITIONS = [None, "true", "false", "args.n > 5", 'args.s == "x"', "args.n / args.d > 1"]


def oracle(condition: str | None, args: dict[str, Any]) -> bool | None:
    """What a condition means, independently of CEL: True, False or None for an error."""
    if condition in (None, "true"):
        return True
    if condition == "false":
        return False
    n, s, d = args.get("n"), args.get("s"), args.get("d")
    if condition == "args.n > 5":
        return None if not isinstance(n, int) else n > 5
    if condition == 'args.s == "x"':
        return None if s is None else s == "x"
    if not isinstance(n, int) or d is None or d == 0:
        return None
    return bool(n // d > 1)


rule_st = st.tuples(
    st.sampled_from(["auto", "notify", "confirm", "block"]),
    st.sampled_from(GLOBS),
    st.sampled_from(CONDITIONS),
)
args_st = st.fixed_dictionaries(
    {},
    optional={
        "n": st.one_of(st.integers(0, 10), st.text(max_size=2)),
        "s": st.sampled_from(["x", "y"]),
        "d": st.integers(0, 3),
    },
)


@settings(max_examples=150, deadline=None)
@given(
    rules=st.lists(rule_st, min_size=0, max_size=7),
    unknown=st.sampled_from(["confirm", "block"]),
    tool=st.sampled_from(TOOLS),
    args=args_st,
)
def test_evaluator_agrees_with_the_reference_semantics(
    rules: list[tuple[str, str, str | None]], unknown: str, tool: str, args: dict[str, Any]
) -> None:
    policy = policy_of(
        *((f"r{i}", glob, tier, when) for i, (tier, glob, when) in enumerate(rules)),
        unknown=unknown,
    )
    result = evaluate(policy, ToolCall(tool=tool, arguments=args), AGENT, NOW)
    from fnmatch import fnmatchcase

    expected: tuple[str, str | None] = (unknown, None)
    for index, (tier, glob, when) in enumerate(rules):
        if not fnmatchcase(tool, glob):
            continue
        verdict = oracle(when, args)
        strict = tier in ("confirm", "block")
        if verdict is True or (verdict is None and strict):
            expected = (tier, f"r{index}")
            break
        # an auto/notify rule whose condition errors must not be chosen, and a strict rule
        # that matched (or errored) must stop the search before any later lenient rule
    assert (result.tier.value, result.rule.name if result.rule else None) == expected
    # invariants, stated on their own
    if result.rule is None:
        assert result.tier in (Tier.CONFIRM, Tier.BLOCK)
    if result.tier in (Tier.AUTO, Tier.NOTIFY):
        assert result.rule is not None and oracle(result.rule.when, args) is True
        for tier, glob, when in rules[: int(result.rule.name[1:])]:
            if tier in ("confirm", "block") and fnmatchcase(tool, glob):
                assert oracle(when, args) is False
