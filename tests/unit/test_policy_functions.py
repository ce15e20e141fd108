"""signoff's CEL helpers (bot.policy.functions, bot.policy.sql): real CEL functions that
error on the wrong type, so a confirm/block rule matches and an auto/notify rule does not."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bot.policy.cel import ConditionError, InvalidCondition, activation, compile_condition
from bot.policy.sql import analyse

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def run(expression: str, **args: Any) -> bool:
    return compile_condition(expression, "test").evaluate(activation(args, {}, {}, NOW))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("production", True),
        ("PRODUCTION", True),
        (" Production\t", True),
        ("\uff50\uff52\uff4f\uff44\uff55\uff43\uff54\uff49\uff4f\uff4e", True),  # fullwidth
        ("staging", False),
    ],
)
def test_fold_compares_case_and_width_insensitively(value: str, expected: bool) -> None:
    assert run('fold(args.s) == "production"', s=value) is expected
    assert run('equals_fold(args.s, "Production")', s=value) is expected


@pytest.mark.parametrize("value", [["production"], 7, True, None, {"a": "production"}])
def test_fold_of_anything_but_a_string_is_an_error(value: Any) -> None:
    with pytest.raises(ConditionError):
        run('fold(args.s) == "production"', s=value)


def test_plain_cel_comparisons_do_not_error_which_is_why_the_helpers_exist() -> None:
    # the documented hole: CEL answers a type mismatch with false, not an error
    assert run('args.s == "production"', s=["production"]) is False
    assert run('args.s != "production"', s=["production"]) is True


@pytest.mark.parametrize(
    ("value", "string", "number"),
    [("x", True, False), (3, False, True), (2.5, False, True), (True, False, False),
     (None, False, False), ([1], False, False)],
)  # fmt: skip
def test_type_guards(value: Any, string: bool, number: bool) -> None:
    assert run("is_string(args.v)", v=value) is string
    assert run("is_number(args.v)", v=value) is number


@pytest.mark.parametrize(
    "value",
    ["CEO@example.com", "ceo@EXAMPLE.COM", " ceo@example.com ", "The Boss <Ceo@Example.com>",
     '"Boss, The" <ceo@example.com>'],
)  # fmt: skip
def test_email_normalises_one_address(value: str) -> None:
    assert run('email(args.a) == "ceo@example.com"', a=value)


@pytest.mark.parametrize(
    "value",
    ["a@example.com, ceo@example.com", "not an address", "", "ceo@localhost", "x@@y.com",
     "ceo@example.com\r\nBcc: x@example.com", ["ceo@example.com"], 5],
)  # fmt: skip
def test_email_refuses_anything_but_one_address(value: Any) -> None:
    with pytest.raises(ConditionError):
        run('email(args.a) == "ceo@example.com"', a=value)


@pytest.mark.parametrize(
    ("sql", "kinds"),
    [
        ("/**/DROP TABLE production.users", ("drop",)),
        ("drop schema production cascade", ("drop",)),
        ("DELETE FROM t", ("delete_all",)),
        ("delete from t where id = 1", ("delete",)),
        ("UPDATE t SET a = 1", ("update_all",)),
        ("TRUNCATE t", ("truncate",)),
        ("select 1; DROP TABLE x", ("select", "drop")),
        ("WITH d AS (DELETE FROM a RETURNING *) SELECT * FROM d", ("select", "delete_all")),
        ("EXPLAIN ANALYZE DELETE FROM x", ("explain", "delete_all")),
        ("ALTER TABLE x DROP COLUMN y", ("drop",)),
        ("SELECT * INTO copy FROM t", ("create",)),
        ("DO $$ BEGIN PERFORM 1; END $$", ("execute",)),
    ],
)
def test_sql_kinds_come_from_the_postgres_parser(sql: str, kinds: tuple[str, ...]) -> None:
    assert analyse(sql).kinds == kinds


def test_sql_schemas_comments_and_statement_counts() -> None:
    found = analyse("SET search_path TO Production; delete from users where id = 1 -- x")
    assert found.schemas == ("production",)
    assert found.comments and found.statements == 2
    assert analyse('DROP TABLE "Production".users').schemas == ("production",)
    assert analyse("select 'a -- not a comment'").comments is False
    assert analyse("select * from a.b union select * from c.d").kinds == ("select", "select")
    assert analyse("select 1").read_only and not analyse("select 1; delete from a").read_only


@pytest.mark.parametrize("value", ["DROP TABL x", "", "   ", ["select 1"], 3, "x" * 70_000])
def test_sql_helpers_error_on_what_does_not_parse(value: Any) -> None:
    with pytest.raises(ConditionError):
        run("sql_destructive(args.s)", s=value)
    with pytest.raises(ConditionError):
        run("sql_read_only(args.s)", s=value)


def test_sql_helpers_through_cel() -> None:
    assert run("sql_destructive(args.s)", s="/**/drop table production.users")
    assert run('"production" in sql_schemas(args.s)', s="delete from production.u where a=1")
    assert run("sql_statements(args.s) == 2", s="select 1; select 2")
    assert run("sql_comments(args.s)", s="select /* hi */ 1")
    assert run('"truncate" in sql_kinds(args.s)', s="truncate a")


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ('fold(1) == "x"', "no matching overload for 'fold'"),
        ("sql_kinds()", "sql_kinds"),
        ("email(args.a) > 3", "no matching overload"),
        ("is_string()", "is_string"),
        ("equals_fold(args.a)", "equals_fold"),
    ],
)
def test_misused_helpers_are_rejected_at_load(expression: str, problem: str) -> None:
    with pytest.raises(InvalidCondition) as caught:
        compile_condition(expression, "p.yaml:3")
    assert problem in caught.value.problem
