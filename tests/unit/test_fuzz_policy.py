"""Property-based fuzzing of the policy loader and the CEL adapter: whatever the input, the
only exceptions are the one error root's (``PolicyError``, a ``SignoffError``). A crash of
any other kind (KeyError, TypeError, AttributeError, RecursionError...) fails the test."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.errors import SignoffError
from bot.policy.cel import activation, compile_condition
from bot.policy.loader import load_sources

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ----------------------------------------------------------------------- policy loader

KEYS = [
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "version",
    "groups",
    "defaults",
    "rules",
    "tool",
    "tier",
    "when",
    "approvers",
    "quorum",
    "sla",
    "escalation",
    "after",
    "to",
    "remind",
    "page",
    "action",
    "reason",
    "rate_limit",
    "max",
    "per",
    "key",
    "slack",
    "teams",
    "console",
    "channel",
    "users",
    "usergroup",
    "unknown_tool",
    "description",
    "all_of",
]
WORDS = [
    "signoff/v1",
    "ToolPolicy",
    "auto",
    "notify",
    "confirm",
    "block",
    "deny",
    "15m",
    "1h",
    "-3s",
    "0s",
    "*.read",
    "payments.transfer",
    "finance",
    "args.amount > 1",
    "args.x +",
    "agent",
    "",
]
scalars = st.one_of(
    st.sampled_from(WORDS),
    st.text(max_size=12),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), inner, max_size=6),
    ),
    max_leaves=40,
)


def _shaped(doc: Any, rules: Any, groups: Any, defaults: Any) -> dict[str, Any]:
    """A document that looks like a policy (so the fuzzing reaches past the first checks)."""
    return {
        "apiVersion": "signoff/v1",
        "kind": "ToolPolicy",
        "metadata": {"name": "fuzz", "version": "1"},
        "groups": groups,
        "defaults": defaults,
        "rules": rules,
        **(doc if isinstance(doc, dict) else {}),
    }


def _load(text: str) -> None:
    with contextlib.suppress(SignoffError):
        load_sources([("fuzz.yaml", text)])


@FUZZ
@given(st.text(max_size=400))
def test_any_text_loads_or_raises_policy_error(text: str) -> None:
    _load(text)


@FUZZ
@given(
    documents,
    st.lists(documents, max_size=5),
    st.dictionaries(st.sampled_from(["finance", "ops", ""]), documents, max_size=3),
    documents,
)
def test_any_policy_shaped_document_loads_or_raises_policy_error(
    doc: Any, rules: Any, groups: Any, defaults: Any
) -> None:
    text = yaml.safe_dump(_shaped(doc, rules, groups, defaults), allow_unicode=True)
    _load(text)


# ----------------------------------------------------------------------- CEL adapter

FRAGMENTS = [
    "args",
    "agent",
    "context",
    "session",
    "call",
    "now",
    ".",
    "amount",
    "id",
    "labels",
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    "'x'",
    '"y"',
    "1",
    "-1",
    "1.5",
    "9223372036854775807",
    "18446744073709551615u",
    "b'z'",
    "true",
    "null",
    " && ",
    " || ",
    "!",
    " == ",
    " < ",
    " + ",
    " / ",
    " % ",
    " in ",
    "?",
    ":",
    ",",
    "has(",
    "size(",
    "int(",
    "string(",
    "timestamp(",
    "duration(",
    "matches(",
    ".exists(x, ",
    ".all(x, ",
    "x",
    "\\",
    "\x00",
]
expressions = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join),
)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=10),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
CONDITIONS = [
    "args.amount >= 10000",
    "args.to.startsWith('acct-')",
    "size(args.items) > 2 && args.items[0] == 'x'",
    "agent.labels.team == 'x' || context.prompt.contains('refund')",
    "args.amount / args.count > 1.5",
    "int(args.n) % 3 == 0",
    "'k' in args && args.k.exists(x, x > 1)",
    "timestamp(args.when) < now",
    "args.amount",
]


@FUZZ
@given(expressions)
def test_any_expression_compiles_or_raises_policy_error(text: str) -> None:
    with contextlib.suppress(SignoffError):
        compile_condition(text, "fuzz.yaml:1")


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["amount", "to", "items", "count", "n", "k", "when"]), json_values
    ),
    st.dictionaries(st.sampled_from(["prompt", "requested_by"]), json_values),
)
def test_any_arguments_evaluate_to_a_bool_or_raise_policy_error(
    args: dict[str, Any], context: dict[str, Any]
) -> None:
    act = activation(
        args, {"id": "a1", "artifact_digest": None, "labels": {"team": "x"}}, context, NOW
    )
    for text in CONDITIONS:
        condition = compile_condition(text, "fuzz.yaml:1")
        try:
            result = condition.evaluate(act)
        except SignoffError:
            continue
        assert result is True or result is False
