"""CEL conditions of policy rules: compile once at load, evaluate on every call.

Owns the one shared CEL environment (variables ``args``, ``agent``, ``context``, ``session``
and ``call`` as ``map(string, dyn)`` and ``now`` as ``timestamp``, plus the CEL strings
extension and signoff's own functions from ``bot.policy.functions``) and the load-time caps on
expression size and nesting (SPEC §5). Imports nothing from the rest of ``bot`` but the error
family and the helper functions.

``compile_condition`` raises ``PolicyError`` for anything wrong with an expression;
``Condition.evaluate`` raises ``ConditionError`` when the expression errors at run time
(missing field, wrong type) or yields a non-bool: the evaluator turns that into "stricter".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_strings

from bot.errors import PolicyError
from bot.policy.functions import FUNCTIONS

#: longest accepted ``when`` expression, in characters
MAX_EXPRESSION_CHARS = 2048
#: deepest accepted nesting of ``()``, ``[]`` and ``{}`` (the CEL parser itself stops at 32)
MAX_NESTING = 24

_DYN_MAP = cel.Type.Map(cel.Type.STRING, cel.Type.DYN)
_ENV = cel.NewEnv(
    variables={
        "args": _DYN_MAP,
        "agent": _DYN_MAP,
        "context": _DYN_MAP,
        "session": _DYN_MAP,
        "call": _DYN_MAP,
        "now": cel.Type.TIMESTAMP,
    },
    extensions=[ext_strings.ExtStrings(), FUNCTIONS],
)
#: what CEL sees as ``session`` and ``call`` when sessions are off (or the call has no key)
NO_SESSION: Mapping[str, Any] = {"labels": [], "calls": 0, "key": None}
NO_CALL: Mapping[str, Any] = {"labels": []}
_ERROR_LINE = re.compile(r"ERROR: <input>:(-?\d+):(-?\d+): (.*)")


class InvalidCondition(PolicyError):
    """A ``when`` expression rejected at load; ``problem`` says why (without the location)."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"invalid condition: {problem}", details=[f"{source}: {problem}"])
        self.problem = problem


class ConditionError(PolicyError):
    """A condition could not be evaluated to a bool for this call (the message may quote
    argument values: log it at DEBUG only)."""

    slug = "policy-condition"

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.problem = problem


def activation(
    args: Mapping[str, Any],
    agent: Mapping[str, Any],
    context: Mapping[str, Any],
    now: datetime,
    session: Mapping[str, Any] = NO_SESSION,
    call: Mapping[str, Any] = NO_CALL,
) -> Any:
    """One CEL activation for all conditions of one evaluation (built once: cheaper than
    passing the data to every ``eval``). Values CEL cannot represent surface as
    ``ConditionError`` when a condition reads them, never here."""
    return _ENV.Activation(
        {
            "args": args,
            "agent": agent,
            "context": context,
            "now": now,
            "session": session,
            "call": call,
        }
    )


_STRINGS = re.compile(r"""[rR]?("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')""")
_CALL_DATA = re.compile(r"(?<![.\w])(args|agent|context|now)(?!\w)")


def session_only(text: str) -> bool:
    """Does ``text`` read nothing but ``session`` and ``call``? (Then it is evaluated on a
    small activation of those two: no arguments converted for it.) Conservative: any bare
    ``args``/``agent``/``context``/``now`` outside string literals says no."""
    return _CALL_DATA.search(_STRINGS.sub('""', text)) is None


_CALL_REF = re.compile(r"(?<![.\w])call(?!\w)")
_SESSION_REFS = re.compile(r"(?<![.\w])(session|call)(?!\w)(\s*\.\s*labels(?!\w))?")
#: how many (call labels, session labels) results one labels-only condition remembers
_MEMO_LIMIT = 1024


def labels_only(text: str) -> bool:
    """Does ``text`` read nothing but ``call.labels`` and ``session.labels``? Its result is
    then a pure function of those two label sets, and is remembered per pair."""
    bare = _STRINGS.sub('""', text)
    if not session_only(text):
        return False
    return all(found.group(2) for found in _SESSION_REFS.finditer(bare))


def reads_call(text: str) -> bool:
    """Does ``text`` mention ``call`` (outside string literals)? Conservative."""
    return _CALL_REF.search(_STRINGS.sub('""', text)) is not None


_LABEL_TEST = re.compile(r"""\s*(?:"([^"\\\n]*)"|'([^'\\\n]*)')\s+in\s+call\s*\.\s*labels\s*""")


def required_call_labels(text: str) -> frozenset[str]:
    """Labels the call must carry for ``text`` to be true: the ``"L" in call.labels`` among
    its top-level ``&&`` operands (none when it has a top-level ``||`` or ``?:``, which this
    does not try to read). CEL's ``&&`` is false when any operand is false, even when another
    errors, so a call without one of them is a plain no-match, decided without CEL. Text with
    a comment or a triple-quoted string is not read at all (conservative)."""
    if "//" in text or '"""' in text or "'''" in text:
        return frozenset()
    parts: list[str] = []
    depth, quote, escaped, start, i = 0, "", False, 0, 0
    while i < len(text):
        ch = text[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and (ch == "?" or text.startswith("||", i)):
            return frozenset()
        elif depth == 0 and text.startswith("&&", i):
            parts.append(text[start:i])
            start, i = i + 2, i + 1
        i += 1
    parts.append(text[start:])
    needed = (_LABEL_TEST.fullmatch(part) for part in parts)
    return frozenset(found.group(1) or found.group(2) or "" for found in needed if found)


def session_activation(session: Mapping[str, Any], call: Mapping[str, Any]) -> Any:
    """An activation holding only ``session`` and ``call`` (see ``session_only``)."""
    return _ENV.Activation({"session": session, "call": call})


class Condition:
    """A compiled ``when`` expression. ``session_only``: it reads only ``session``/``call``;
    ``labels_only``: only their ``labels`` (see ``evaluate_labels``); ``needs_labels``: call
    labels it is false without."""

    __slots__ = (
        "_expr",
        "_memo",
        "labels_only",
        "needs_labels",
        "reads_call",
        "session_only",
        "source",
        "text",
    )

    def __init__(self, text: str, source: str, expr: Any) -> None:
        self.text = text
        self.source = source
        self._expr = expr
        self.session_only = session_only(text)
        self.labels_only = labels_only(text)
        self.reads_call = reads_call(text)
        #: the call labels without which this is false (``required_call_labels``)
        self.needs_labels = required_call_labels(text)
        self._memo: dict[tuple[tuple[str, ...], tuple[str, ...]], bool | str] = {}

    def evaluate_labels(self, call: tuple[str, ...], session: tuple[str, ...]) -> bool:
        """``evaluate`` for a ``labels_only`` condition, remembered per pair of label sets
        (an error is remembered too, and raised again)."""
        key = (call, session)
        found = self._memo.get(key)
        if found is None:
            act = session_activation({"labels": list(session)}, {"labels": list(call)})
            try:
                found = self.evaluate(act)
            except ConditionError as exc:
                found = exc.problem
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[key] = found
        if isinstance(found, str):
            raise ConditionError(self.source, found)
        return found

    def evaluate(self, act: Any) -> bool:
        """True/False for this activation; raises ``ConditionError`` on a CEL error value
        or a result that is not a bool."""
        try:
            value = self._expr.eval(act)
            result = value.value()
        except Exception as exc:  # the binding raises plain RuntimeError/TypeError
            raise ConditionError(self.source, f"condition failed: {exc}") from exc
        if result is True or result is False:
            return result
        if value.type() == cel.Type.ERROR:
            raise ConditionError(self.source, f"condition error: {result}")
        raise ConditionError(self.source, f"condition returned {value.type().name()}, not a bool")

    def __repr__(self) -> str:
        return f"Condition({self.text!r})"


def compile_condition(text: str, source: str) -> Condition:
    """Compile and type-check ``text``; raises ``InvalidCondition`` (one detail naming
    ``source``) when it is too long, nested too deeply, does not parse, references
    anything but ``args``/``agent``/``context``/``session``/``call``/``now`` and the
    signoff functions (or calls those with arguments of the wrong type), or cannot be a
    bool."""
    problem = _precheck(text)
    if problem is None:
        try:
            expr = _ENV.compile(text)
        except Exception as exc:  # the binding raises RuntimeError with CEL's report
            problem = _describe(str(exc))
        else:
            kind = expr.return_type()
            if kind == cel.Type.BOOL or kind == cel.Type.DYN:
                return Condition(text, source, expr)
            problem = f"condition must be a bool, but it is {kind.name()}"
    raise InvalidCondition(source, problem)


def _precheck(text: str) -> str | None:
    if not text.strip():
        return "condition is empty"
    if len(text) > MAX_EXPRESSION_CHARS:
        return f"condition is {len(text)} characters long (the limit is {MAX_EXPRESSION_CHARS})"
    depth = _nesting(text)
    if depth > MAX_NESTING:
        return f"condition nests {depth} levels deep (the limit is {MAX_NESTING})"
    return None


def _nesting(text: str) -> int:
    """Deepest bracket nesting outside string literals (a cheap, conservative scan)."""
    depth = deepest = 0
    quote: str | None = None
    escaped = False
    for ch in text:
        if quote is not None:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
    return deepest


def _describe(report: str) -> str:
    """The first CEL compiler message, with its position inside the expression."""
    for line in report.splitlines():
        found = _ERROR_LINE.search(line)
        if found:
            row, col, message = found.groups()
            message = message.removesuffix(" [INVALID_ARGUMENT]")
            if row.startswith("-"):
                return f"CEL: {message}"
            return f"CEL: {message} (expression line {row}, column {col})"
    first = report.strip().splitlines()[0] if report.strip() else "unknown CEL error"
    return f"CEL: {first.removeprefix('INVALID_ARGUMENT: ')}"
