"""CEL conditions: load-time checks and caps, run-time errors surfaced as ConditionError."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.errors import PolicyError
from bot.policy.cel import (
    MAX_EXPRESSION_CHARS,
    MAX_NESTING,
    ConditionError,
    InvalidCondition,
    activation,
    compile_condition,
)

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def act(**args: object) -> object:
    return activation(args, {"id": "a1", "artifact_digest": None, "labels": {"team": "x"}}, {}, NOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("args.amount +", "CEL: Syntax error"),
        ("foo == 1", "CEL: undeclared reference to 'foo'"),
        ("args.amount + 1", "condition must be a bool, but it is INT"),
        ("'text'", "condition must be a bool, but it is STRING"),
        ("   ", "condition is empty"),
    ],
)
def test_bad_expressions_are_rejected_at_load(text: str, expected: str) -> None:
    with pytest.raises(InvalidCondition) as caught:
        compile_condition(text, "p.yaml:3")
    assert expected in caught.value.problem
    assert caught.value.details[0].startswith("p.yaml:3: ")
    assert isinstance(caught.value, PolicyError)


def test_size_and_nesting_are_capped() -> None:
    long = "args.a == 1 || " * (MAX_EXPRESSION_CHARS // 15 + 1) + "true"
    with pytest.raises(InvalidCondition, match="characters long"):
        compile_condition(long, "s")
    deep = "(" * (MAX_NESTING + 1) + "true" + ")" * (MAX_NESTING + 1)
    with pytest.raises(InvalidCondition, match="nests 25 levels deep"):
        compile_condition(deep, "s")
    fine = "(" * MAX_NESTING + "true" + ")" * MAX_NESTING
    assert compile_condition(fine, "s").evaluate(act()) is True


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = 'args.s == "' + "(" * 40 + '"'
    assert compile_condition(text, "s").evaluate(act(s="(" * 40)) is True


def test_conditions_see_args_agent_context_and_now() -> None:
    cond = compile_condition(
        'args.amount >= 10 && agent.id == "a1" && agent.labels.team == "x" '
        '&& now > timestamp("2026-01-01T00:00:00Z") && size(context) == 0',
        "s",
    )
    assert cond.evaluate(act(amount=10)) is True
    assert cond.evaluate(act(amount=9)) is False


def test_strings_extension_is_available() -> None:
    cond = compile_condition('args.sql.trim().upperAscii().startsWith("DELETE")', "s")
    assert cond.evaluate(act(sql="  delete from t")) is True


@pytest.mark.parametrize(
    ("text", "args", "expected"),
    [
        ("args.amount > 3", {}, "Key not found"),
        ("args.amount > 3", {"amount": "many"}, "No matching overloads"),
        ("args.amount / args.n > 1", {"amount": 1, "n": 0}, "divide by zero"),
        ("args.x", {"x": 5}, "condition returned INT, not a bool"),
        ("args.amount > 3", {"amount": 2**70}, "out of range"),
        ("args.amount > 3", {"amount": (1, 2)}, "Non-CEL value"),
    ],
)
def test_runtime_errors_raise_condition_error(
    text: str, args: dict[str, object], expected: str
) -> None:
    with pytest.raises(ConditionError) as caught:
        compile_condition(text, "p.yaml:9").evaluate(act(**args))
    assert expected in caught.value.problem
    assert caught.value.message.startswith("p.yaml:9: ")


def test_dyn_result_that_is_bool_is_accepted() -> None:
    assert compile_condition("args.flag", "s").evaluate(act(flag=True)) is True
