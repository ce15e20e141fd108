"""signoff's own CEL functions: conditions that a wrong type or a case trick cannot sidestep.

CEL's ``==``, ``!=`` and ``in`` compare values of different types without an error
(``["production"] == "production"`` is simply false), so a condition like
``args.schema == "production"`` on a confirm rule lets ``schema: ["production"]`` or
``"PRODUCTION"`` slip past it. These functions fail instead: given a value of the wrong type
they raise, which CEL turns into an evaluation error, which makes a confirm/block rule match
and an auto/notify rule not match (SPEC §5).

==============================  =================================================================
``fold(s)``                     ``s`` NFKC-normalised, case-folded and stripped (string only)
``equals_fold(a, b)``           ``fold(a) == fold(b)`` (strings only)
``is_string(x)``, ``is_number(x)``   type guards (a bool is not a number)
``email(s)``                    the normalised address of ``s`` (``"Ceo <CEO@Example.com>"`` →
                                ``"ceo@example.com"``); one address, else an error
``sql_kinds(s)``                kinds of every statement (``bot.policy.sql``), nested ones too
``sql_statements(s)``           how many top-level statements ``s`` holds
``sql_schemas(s)``              schema names ``s`` touches (case-folded)
``sql_comments(s)``             whether ``s`` contains comments
``sql_destructive(s)``          any DROP, TRUNCATE, or DELETE/UPDATE without WHERE
``sql_read_only(s)``            every statement a plain SELECT
==============================  =================================================================

``FUNCTIONS`` is the CEL extension registering them (typed, so misuse such as ``fold(1)`` or
``sql_kinds()`` is rejected when the policy loads); ``NAMES`` is what the linter knows. The
SQL parser (``bot.policy.sql``: pglast, ~3 MB) loads with the first ``sql_*`` call evaluated.
"""

from __future__ import annotations

import unicodedata
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.utils import getaddresses
from typing import TYPE_CHECKING, Any

from cel_expr_python import cel

if TYPE_CHECKING:
    from bot.policy.sql import Analysis

_STRING, _DYN, _BOOL, _INT = cel.Type.STRING, cel.Type.DYN, cel.Type.BOOL, cel.Type.INT
_STRINGS = cel.Type.List(cel.Type.STRING)
#: longest string the text helpers accept (longer is an error: stricter)
MAX_TEXT = 65_536


def fold(value: Any) -> str:
    """NFKC + casefold + strip. Raises ``TypeError`` for anything but a string."""
    text = _text(value, "fold")
    return unicodedata.normalize("NFKC", text).casefold().strip()


def equals_fold(left: Any, right: Any) -> bool:
    return fold(left) == fold(right)


def is_string(value: Any) -> bool:
    return isinstance(value, str)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def email(value: Any) -> str:
    """The one address in ``value``, NFKC-normalised and lower-cased (local part included:
    mail systems treat it case-insensitively in practice). Raises ``ValueError`` for no
    address, several addresses or a malformed one."""
    text = unicodedata.normalize("NFKC", _text(value, "email")).strip()
    if any(ch in text for ch in "\r\n\x00"):
        raise ValueError("email address contains control characters")
    found = getaddresses([text])
    if len(found) != 1 or not found[0][1]:
        raise ValueError("email() needs exactly one address")
    address = found[0][1]
    try:
        parsed = Address(addr_spec=address)
    except (HeaderParseError, ValueError, IndexError) as exc:
        raise ValueError(f"not an email address: {exc}") from None
    if not parsed.username or "." not in parsed.domain or parsed.domain.startswith("."):
        raise ValueError("not an email address")
    return f"{parsed.username}@{parsed.domain}".casefold()


def _analyse(value: Any) -> Analysis:
    from bot.policy.sql import analyse  # the parser loads with the first SQL text analysed

    return analyse(value)


def sql_kinds(value: Any) -> list[str]:
    return list(_analyse(value).kinds)


def sql_statements(value: Any) -> int:
    return _analyse(value).statements


def sql_schemas(value: Any) -> list[str]:
    return list(_analyse(value).schemas)


def sql_comments(value: Any) -> bool:
    return _analyse(value).comments


def sql_destructive(value: Any) -> bool:
    return _analyse(value).destructive


def sql_read_only(value: Any) -> bool:
    return _analyse(value).read_only


def _text(value: Any, helper: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{helper}() needs a string, not {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise ValueError(f"{helper}() argument is longer than {MAX_TEXT} characters")
    return value


def _decl(name: str, result: Any, params: list[Any], impl: Any) -> Any:
    return cel.FunctionDecl(name, [cel.Overload(f"signoff_{name}", result, params, impl=impl)])


_DECLS = [
    _decl("fold", _STRING, [_STRING], fold),
    _decl("equals_fold", _BOOL, [_STRING, _STRING], equals_fold),
    _decl("is_string", _BOOL, [_DYN], is_string),
    _decl("is_number", _BOOL, [_DYN], is_number),
    _decl("email", _STRING, [_STRING], email),
    _decl("sql_kinds", _STRINGS, [_STRING], sql_kinds),
    _decl("sql_statements", _INT, [_STRING], sql_statements),
    _decl("sql_schemas", _STRINGS, [_STRING], sql_schemas),
    _decl("sql_comments", _BOOL, [_STRING], sql_comments),
    _decl("sql_destructive", _BOOL, [_STRING], sql_destructive),
    _decl("sql_read_only", _BOOL, [_STRING], sql_read_only),
]
FUNCTIONS = cel.CelExtension("signoff", _DECLS)
NAMES = frozenset(
    {
        "fold",
        "equals_fold",
        "is_string",
        "is_number",
        "email",
        "sql_kinds",
        "sql_statements",
        "sql_schemas",
        "sql_comments",
        "sql_destructive",
        "sql_read_only",
    }
)
#: helpers that make a string comparison safe (a guard or case folding)
GUARDS = frozenset({"fold", "equals_fold", "is_string", "email"})
