"""Warnings about a policy that loads but can be sidestepped (``signoff policy check``).

A loaded policy can still be weak. Each warning is ``file:line: warning: message``:

- an auto/notify rule compares a string argument with ``==``, ``!=`` or ``in`` without a
  guard (``is_string(x)``) or case folding (``fold``/``equals_fold``/``email``): CEL answers
  such a comparison on a list, a number or ``"PRODUCTION"`` with a plain ``false``, no error;
- ``!=`` in an auto/notify rule: anything unexpected (another type, other case, a missing
  guard) is "not equal" and so allowed;
- a rule whose glob (without a condition) shadows a later rule, which then never matches;
- a rule no case in the policy's case files ends at;
- a session label naming a tool (no wildcard) that no rule's glob matches (rules on ``*``
  alone do not count), and a label name a condition tests that ``sessions.labels`` does not
  define.

The expression checks read CEL tokens, not a full syntax tree: they look at the operands
right next to each comparison, which is where these mistakes live.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path

from bot.domain import Tier
from bot.errors import PolicyError
from bot.policy.model import Policy, Rule

_TOKEN = re.compile(
    r"""(?P<string>[rR]?(?:"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'))
      | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/%<>!?:])
      | (?P<open>[(\[{]) | (?P<close>[)\]}])
      | (?P<dot>\.) | (?P<comma>,)
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<number>\d[\w.]*)
      | (?P<space>\s+)""",
    re.VERBOSE,
)
_ROOTS = ("args", "context")
_FOLDING = ("fold", "equals_fold", "email")
_LABEL_REF = re.compile(
    r"""["']([^"'\\]+)["']\s+in\s+(?:session|call)\.labels|(?:session|call)\.labels\.exists\(\w+,\s*\w+\s*==\s*["']([^"'\\]+)["']"""
)


def tokens(text: str) -> list[tuple[str, str]]:
    """``(kind, text)`` of every token (spaces dropped; anything unknown as ``other``)."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        found = _TOKEN.match(text, pos)
        if found is None:
            out.append(("other", text[pos]))
            pos += 1
            continue
        kind = found.lastgroup or "other"
        if kind != "space":
            out.append((kind, found.group()))
        pos = found.end()
    return out


def _operand(toks: list[tuple[str, str]], start: int, step: int) -> list[tuple[str, str]]:
    """The postfix expression next to an operator (members, indexes, calls, a list literal)."""
    depth = 0
    out: list[tuple[str, str]] = []
    i = start
    while 0 <= i < len(toks):
        kind, text = toks[i]
        opening, closing = ("open", "close") if step > 0 else ("close", "open")
        if kind == opening:
            depth += 1
        elif kind == closing:
            if depth == 0:
                break
            depth -= 1
        elif depth == 0 and (kind in ("op", "comma") or (kind == "word" and text == "in")):
            break
        out.append(toks[i])
        i += step
    return out if step > 0 else out[::-1]


def _bare_path(operand: list[tuple[str, str]]) -> str | None:
    """``args.x.y`` / ``context.x`` written without any function around it."""
    if not operand or operand[0] != ("word", operand[0][1]) or operand[0][1] not in _ROOTS:
        return None
    if any(kind == "open" and text == "(" for kind, text in operand):
        return None
    return "".join(text for _, text in operand)


def unsafe_comparisons(text: str) -> list[str]:
    """Comparisons of a bare ``args``/``context`` path with a string (or list of strings)
    that no ``is_string`` guard on that path protects."""
    toks = tokens(text)
    guarded = {
        "".join(t for _, t in _operand(toks, i + 2, 1))
        for i, (kind, word) in enumerate(toks)
        if kind == "word" and word == "is_string" and i + 1 < len(toks) and toks[i + 1][1] == "("
    }
    found: list[str] = []
    for i, (kind, word) in enumerate(toks):
        if not ((kind == "op" and word in ("==", "!=")) or (kind == "word" and word == "in")):
            continue
        left, right = _operand(toks, i - 1, -1), _operand(toks, i + 1, 1)
        for path, other in ((_bare_path(left), right), (_bare_path(right), left)):
            if path is None or path in guarded:
                continue
            if any(kind == "string" for kind, _ in other):
                found.append(f"{path} {word} …")
    return found


def lint_policy(policy: Policy, cases: Sequence[Path] = ()) -> list[str]:
    """Every warning about ``policy`` (``file:line: warning: message``), in policy order.
    ``cases`` are the case files for the coverage check (none: that check is skipped).
    Raises ``PolicyError`` when a case file is malformed."""
    out: list[str] = []
    for rule in policy.rules:
        out.extend(_expression_warnings(rule))
    out.extend(_shadowed(policy.rules))
    if cases:
        out.extend(_uncovered(policy, cases))
    out.extend(_label_warnings(policy))
    return out


def _expression_warnings(rule: Rule) -> list[str]:
    if rule.when is None or rule.tier not in (Tier.AUTO, Tier.NOTIFY):
        return []
    out = [
        f"{rule.source}: warning: {rule.tier.value} rule {rule.name!r} compares `{found}` "
        "with a string without a guard or case folding: a list, a number or other case "
        "slips past it (use fold(), email() or an is_string() guard)"
        for found in unsafe_comparisons(rule.when)
    ]
    if any(kind == "op" and text == "!=" for kind, text in tokens(rule.when)):
        out.append(
            f"{rule.source}: warning: {rule.tier.value} rule {rule.name!r} uses `!=`: "
            "any unexpected value is 'not equal' and so allowed; say what is allowed instead"
        )
    return out


def _covers(earlier: str, later: str) -> bool:
    """Does every tool ``later`` matches also match ``earlier``? (Exact for literal tools;
    for globs, ``later`` is read as a name, which is right for the usual ``*`` patterns.)"""
    return earlier == later or fnmatchcase(later, earlier)


def _shadowed(rules: Sequence[Rule]) -> list[str]:
    out: list[str] = []
    for i, later in enumerate(rules):
        for earlier in rules[:i]:
            if earlier.when is None and _covers(earlier.tool, later.tool):
                out.append(
                    f"{later.source}: warning: rule {later.name!r} never matches: rule "
                    f"{earlier.name!r} ({earlier.source}) has no condition and its tool "
                    f"{earlier.tool!r} covers {later.tool!r}"
                )
                break
    return out


def _uncovered(policy: Policy, cases: Sequence[Path]) -> list[str]:
    from bot.policy.cases import run_cases  # cases imports the evaluator, which imports model

    covered: set[str] = set()
    for path in cases:
        try:
            covered |= run_cases(policy, path).covered
        except PolicyError as exc:
            raise PolicyError(f"{path}: {exc.message}", details=exc.details) from exc
    names = ", ".join(str(path) for path in cases)
    return [
        f"{rule.source}: warning: no case in {names} ends at rule {rule.name!r}"
        for rule in policy.rules
        if rule.name not in covered
    ]


def _label_warnings(policy: Policy) -> list[str]:
    sessions = policy.sessions
    out: list[str] = []
    named = [rule.tool for rule in policy.rules if rule.tool.strip("*")]
    defined = set(sessions.labels) if sessions is not None else set()
    if sessions is not None:
        for label in sessions.labels.values():
            for glob in label.tools:
                if any(ch in glob for ch in "*?["):
                    continue  # a glob may well name tools only other globs cover
                if not any(_covers(tool, glob) for tool in named):
                    out.append(
                        f"{label.source}: warning: session label {label.name!r}: tool "
                        f"{glob!r} matches no tool any rule names (a typo?)"
                    )
    for rule in policy.rules:
        if rule.when is None:
            continue
        for found in _LABEL_REF.finditer(rule.when):
            name = found.group(1) or found.group(2)
            if name not in defined:
                out.append(
                    f"{rule.source}: warning: rule {rule.name!r} tests label {name!r}, which "
                    "sessions.labels does not define: the test is never true"
                )
    return out
