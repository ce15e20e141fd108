"""Sessions in the policy (SPEC §5): the `sessions` block, labels, the CEL view, bad input."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain import SessionCalls, Tier, ToolCall
from bot.errors import PolicyError, RequestError
from bot.policy.cases import explain, replay_session, to_agent
from bot.policy.cel import activation, compile_condition
from bot.policy.evaluator import Evaluation, evaluate
from bot.policy.loader import load_sources
from bot.policy.model import Policy
from bot.policy.session import session_key, summarise

NOW = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
HEAD = """
apiVersion: signoff/v1
kind: ToolPolicy
groups:
  security: {console: {users: [dave]}}
"""
SESSIONS = """
sessions:
  window: 30m
  labels:
    private_data: {tools: ["crm.*"]}
    untrusted_content:
      tools: [web.fetch]
      when: '!fold(args.url).startsWith("https://intranet/")'
    external_comms: {tools: [email.send]}
rules:
  - name: trifecta
    tool: "*"
    when: >-
      "external_comms" in call.labels && "private_data" in session.labels &&
      "untrusted_content" in session.labels
    tier: confirm
    approvers: {groups: [security]}
  - name: busy
    tool: "*"
    when: session.calls >= 3
    tier: confirm
    approvers: {groups: [security]}
  - {name: rest, tool: "*", tier: auto}
"""


def load(text: str) -> Policy:
    return load_sources([("p.yaml", HEAD + text)])


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load(text)
    return list(caught.value.details)


def judge(
    policy: Policy, tool: str, args: dict[str, Any], earlier: Sequence[Mapping[str, Any]]
) -> Evaluation:
    call = ToolCall(tool, args, context={"session_id": "s"})
    agent = to_agent(None)
    view, _ = replay_session(policy, call, agent, earlier, NOW)
    return evaluate(policy, call, agent, NOW, view)


def rule_of(
    policy: Policy, tool: str, args: dict[str, Any], earlier: Sequence[Mapping[str, Any]]
) -> str:
    """The name of the rule that decides the call (the test expects one)."""
    rule = judge(policy, tool, args, earlier).rule
    assert rule is not None
    return rule.name


def test_the_sessions_block_loads_with_defaults() -> None:
    policy = load(SESSIONS)
    assert policy.sessions is not None
    assert policy.sessions.key == "context.session_id"
    assert policy.sessions.window == timedelta(minutes=30)
    assert list(policy.sessions.labels) == ["private_data", "untrusted_content", "external_comms"]


def test_labels_by_glob_and_condition_and_the_session_view() -> None:
    policy = load(SESSIONS)
    read, fetch = {"tool": "crm.read"}, {"tool": "web.fetch", "arguments": {"url": "https://x"}}
    result = judge(policy, "email.send", {}, [read, fetch])
    assert result.tier is Tier.CONFIRM and result.rule is not None
    assert result.rule.name == "trifecta" and result.labels == ("external_comms",)
    assert rule_of(policy, "email.send", {}, [read]) == "rest"
    intranet = {"tool": "web.fetch", "arguments": {"url": "HTTPS://INTRANET/wiki"}}
    assert rule_of(policy, "email.send", {}, [read, intranet]) == "rest"
    # a label condition that errors attaches the label (stricter)
    odd = {"tool": "web.fetch", "arguments": {"url": ["https://intranet/"]}}
    assert rule_of(policy, "email.send", {}, [read, odd]) == "trifecta"
    assert rule_of(policy, "x", {}, [read, read, read]) == "busy"


def test_a_call_without_a_key_is_a_session_of_its_own() -> None:
    policy = load(SESSIONS)
    call = ToolCall("email.send", {})
    view, _ = replay_session(policy, call, to_agent(None), [{"tool": "crm.read"}] * 3, NOW)
    assert view.key is None and view.calls == 0
    rule = evaluate(policy, call, to_agent(None), NOW, view).rule
    assert rule is not None and rule.name == "rest"


@pytest.mark.parametrize(
    ("value", "problem"),
    [(7, "not a number"), (True, "not a boolean"), ([1], "not a list"), ({}, "not an object"),
     ("", "1 to 256"), ("x" * 300, "1 to 256")],
)  # fmt: skip
def test_a_session_key_of_the_wrong_type_is_refused(value: object, problem: str) -> None:
    spec = load(SESSIONS).sessions
    assert spec is not None
    with pytest.raises(RequestError, match=problem):
        session_key(spec, {}, {"session_id": value}, "agent")
    assert session_key(spec, {}, {"session_id": None}, "agent") is None
    assert session_key(spec, {}, {}, "agent") is None


def test_other_key_paths() -> None:
    by_agent = load(SESSIONS.replace("window: 30m", "key: agent.id")).sessions
    assert by_agent is not None and session_key(by_agent, {}, {}, "bot-1") == "bot-1"
    nested = load(SESSIONS.replace("window: 30m", "key: context.trace.session")).sessions
    assert nested is not None
    assert session_key(nested, {}, {"trace": {"session": "t"}}, "a") == "t"
    assert session_key(nested, {}, {"trace": "flat"}, "a") is None


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("sessions: {key: session_id}", "sessions.key must be a path like context.session_id"),
        ("sessions: {key: agent.name}", "sessions.key must be a path"),
        ("sessions: {window: forever}", "sessions.window must be a duration"),
        ("sessions: {labels: {a: {tools: []}}}", "label 'a' needs at least one tool glob"),
        ("sessions: {labels: {a: {when: 'true'}}}", "label 'a' is missing 'tools'"),
        ("sessions: {labels: {a: {tools: [x], when: 'fold(1) == \"a\"'}}}", "no matching overload"),
        ("sessions: {labels: {a: {tools: [x], when: 'is_string()'}}}", "is_string"),
        ("sessions: {labels: {'a b': {tools: [x]}}}", "label name 'a b' may only use"),
        ("sessions: {lables: {}}", "unknown key 'lables' in sessions"),
    ],
)
def test_bad_sessions_blocks_are_load_problems(block: str, expected: str) -> None:
    found = problems(block + "\nrules: []\n")
    assert any(expected in line for line in found), found
    assert all(line.startswith("p.yaml:") for line in found)


def test_sessions_may_be_set_once() -> None:
    one = HEAD + "sessions: {window: 1h}\nrules: []\n"
    with pytest.raises(PolicyError) as caught:
        load_sources([("a.yaml", one), ("b.yaml", one)])
    assert any("sessions is already set at a.yaml" in line for line in caught.value.details)


def test_a_session_view_stays_small_for_ten_thousand_calls() -> None:
    rows = [
        SessionCalls(("private_data",), 5_000, "a", "b", NOW),
        SessionCalls((), 5_000, "c", "d", NOW),
    ]
    view = summarise("s", rows)
    assert view.calls == 10_000 and view.cel() == {
        "key": "s",
        "calls": 10_000,
        "labels": ["private_data"],
    }


def test_explain_lists_the_calls_behind_each_label() -> None:
    text = explain(
        load(SESSIONS),
        "email.send",
        {},
        context={"session_id": "s"},
        session=[{"tool": "crm.read"}, {"tool": "web.fetch", "arguments": {"url": "x"}},
                 {"tool": "crm.list"}],
    )  # fmt: skip
    assert "labels:   external_comms" in text
    assert "session:  's', 3 earlier call(s) in the window" in text
    assert "private_data: put there by 2 call(s), first call 1 (crm.read), latest call 3" in text
    assert "untrusted_content: put there by 1 call(s), first call 2 (web.fetch)" in text


LABELS = ["a", "b", "c"]


@given(
    call=st.lists(st.sampled_from(LABELS), unique=True),
    session=st.lists(st.sampled_from(LABELS), unique=True),
)
def test_remembered_label_conditions_agree_with_plain_evaluation(
    call: list[str], session: list[str]
) -> None:
    text = '"a" in call.labels && ("b" in session.labels || session.labels.exists(l, l == "c"))'
    condition = compile_condition(text, "t")
    assert condition.labels_only
    plain = condition.evaluate(activation({}, {}, {}, NOW, {"labels": session}, {"labels": call}))
    calls, seen = tuple(sorted(call)), tuple(sorted(session))
    assert condition.evaluate_labels(calls, seen) is plain
    assert condition.evaluate_labels(calls, seen) is plain  # remembered


def test_which_conditions_are_pure_functions_of_labels() -> None:
    assert compile_condition('"x" in call.labels', "t").labels_only
    for text in (
        "session.calls > 3",
        'session.key == "k"',
        'args.x == 1 && "x" in call.labels',
        'session["labels"] == []',
        "now > timestamp('2020-01-01T00:00:00Z')",
    ):
        assert not compile_condition(text, "t").labels_only, text


def test_the_call_labels_a_condition_cannot_be_true_without() -> None:
    needs = {
        '"external_comms" in call.labels && !has(context.session_id)': {"external_comms"},
        "'a' in call.labels && \"b\" in call.labels && args.x > 1": {"a", "b"},
        '"a" in call.labels && "p" in session.labels': {"a"},
        '"a" in call.labels || args.x > 1': set(),  # an `||` at the top: not read
        'args.x > 1 ? "a" in call.labels : true': set(),
        '("a" in call.labels && args.x > 1)': set(),  # only top-level operands
        '!("a" in call.labels) && args.x > 1': set(),
        '"a" in call.labels == false && args.x > 1': set(),
        '"a && b" in call.labels && args.x > 1': {"a && b"},
        '"a" in session.labels && args.x > 1': set(),
        'args.x > 1 && "a" in call.labels // && "b" in call.labels': set(),  # a comment
    }
    for text, expected in needs.items():
        assert compile_condition(text, "t").needs_labels == expected, text


@given(
    call=st.lists(st.sampled_from(LABELS), unique=True),
    x=st.one_of(st.integers(-3, 3), st.text(max_size=2), st.none()),
    has_x=st.booleans(),
)
def test_a_condition_without_its_call_labels_is_false_even_when_the_rest_errors(
    call: list[str], x: object, has_x: bool
) -> None:
    """What the evaluator skips CEL for is what CEL itself says: `false && error` is false."""
    text = '"a" in call.labels && args.x > 1 && "b" in call.labels'
    condition = compile_condition(text, "t")
    args = {"x": x} if has_x else {}
    act = activation(args, {}, {}, NOW, {"labels": []}, {"labels": call})
    if not condition.needs_labels <= set(call):
        assert condition.evaluate(act) is False


@pytest.mark.parametrize("sessions", [SESSIONS.split("rules:")[0], ""])
def test_rules_needing_a_label_the_call_lacks_are_not_run_through_cel(sessions: str) -> None:
    policy = load(
        sessions
        + """
rules:
  - name: sends
    tool: "*"
    when: '"external_comms" in call.labels && args.x.y > 1'
    tier: confirm
    approvers: {groups: [security]}
  - {name: rest, tool: "*", tier: auto}
"""
    )
    condition = policy.rules[0].condition
    assert condition is not None
    condition._expr = None  # would fail (and count as a match: confirm) if CEL ran
    for context in ({}, {"session_id": "s"}):
        ev = evaluate(policy, ToolCall("crm.read", {}, "", context), to_agent(None), NOW)
        assert ev.tier is Tier.AUTO
        assert [outcome for _, outcome, _ in ev.steps] == ["not-matched", "matched"]
