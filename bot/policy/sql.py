"""What a SQL text would do, for policy conditions (the ``sql_*`` CEL helpers).

Parsed with the PostgreSQL parser itself (``pglast``, libpg_query), never with a regex, so
comments (``/**/DROP``), case, quoting, several statements in one string and data-modifying
statements nested in a CTE or under ``EXPLAIN ANALYZE`` are all seen as the server would see
them. ``analyse`` raises ``ValueError`` for text that is not a string, is too long or does not
parse: through CEL that is an evaluation error, which makes a confirm/block rule match and an
auto/notify rule not match.

Kinds, one per statement (nested data-modifying statements add their own):
``select``, ``insert``, ``update``, ``update_all`` (no ``WHERE``), ``delete``, ``delete_all``
(no ``WHERE``), ``merge``, ``drop`` (any ``DROP …``, ``ALTER … DROP …``), ``truncate``,
``alter``, ``create`` (also ``SELECT … INTO``), ``grant``, ``copy``, ``set``, ``execute``
(``DO``, ``CALL``, ``EXECUTE``), ``transaction``, ``explain``, ``other``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from pglast import ast, parse_sql, visitors
from pglast.parser import ParseError, scan

#: longest SQL text analysed (longer text is an error, so strict rules match)
MAX_SQL_CHARS = 65_536
#: kinds that destroy data or schema wholesale
DESTRUCTIVE = frozenset({"drop", "truncate", "delete_all", "update_all"})
_READ_ONLY = frozenset({"select"})
_SIMPLE: dict[type[Any], str] = {
    ast.InsertStmt: "insert",
    ast.MergeStmt: "merge",
    ast.TruncateStmt: "truncate",
    ast.GrantStmt: "grant",
    ast.GrantRoleStmt: "grant",
    ast.CopyStmt: "copy",
    ast.VariableSetStmt: "set",
    ast.DoStmt: "execute",
    ast.CallStmt: "execute",
    ast.ExecuteStmt: "execute",
    ast.TransactionStmt: "transaction",
    ast.ExplainStmt: "explain",
}
_COMMENTS = frozenset({"C_COMMENT", "SQL_COMMENT"})


@dataclass(frozen=True, slots=True)
class Analysis:
    """``kinds`` in order of appearance; ``schemas`` casefolded, first appearance first."""

    statements: int
    kinds: tuple[str, ...]
    schemas: tuple[str, ...]
    comments: bool

    @property
    def destructive(self) -> bool:
        return any(kind in DESTRUCTIVE for kind in self.kinds)

    @property
    def read_only(self) -> bool:
        """Every statement is a plain ``SELECT`` (volatile functions it calls are not seen)."""
        return bool(self.kinds) and all(kind in _READ_ONLY for kind in self.kinds)


def analyse(text: object) -> Analysis:
    """The analysis of ``text``; raises ``ValueError`` (see the module docstring)."""
    if not isinstance(text, str):
        raise ValueError(f"SQL must be a string, not {type(text).__name__}")
    if len(text) > MAX_SQL_CHARS:
        raise ValueError(f"SQL is longer than {MAX_SQL_CHARS} characters")
    return _analyse(text)


@functools.lru_cache(maxsize=512)
def _analyse(text: str) -> Analysis:
    # one call's conditions ask several questions about the same statement: parse it once
    try:
        statements = parse_sql(text)
        comments = any(token.name in _COMMENTS for token in scan(text))
    except ParseError as exc:
        raise ValueError(f"SQL does not parse: {exc}") from None
    if not statements:
        raise ValueError("SQL holds no statement")
    walker = _Walker()
    walker(statements)
    return Analysis(
        statements=len(statements),
        kinds=tuple(walker.kinds),
        schemas=tuple(dict.fromkeys(walker.schemas)),
        comments=comments,
    )


class _Walker(visitors.Visitor):
    """Collects a kind for every statement node and every schema name referenced."""

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.schemas: list[str] = []

    def visit(self, ancestors: Any, node: Any) -> None:
        kind = _kind(node)
        if kind is not None:
            self.kinds.append(kind)
        if isinstance(node, ast.RangeVar) and node.schemaname:
            self.schemas.append(str(node.schemaname).casefold())
        elif isinstance(node, ast.DropStmt):
            self.schemas.extend(_drop_schemas(node))
        elif isinstance(node, ast.VariableSetStmt) and (node.name or "").lower() == "search_path":
            self.schemas.extend(_constants(node.args))


def _kind(node: Any) -> str | None:
    if isinstance(node, ast.SelectStmt):
        # a set operation (UNION…) is a SelectStmt holding SelectStmts: count the outer one
        if node.op is not None and getattr(node.op, "name", "SETOP_NONE") != "SETOP_NONE":
            return None
        return "create" if node.intoClause is not None else "select"
    if isinstance(node, ast.UpdateStmt):
        return "update" if node.whereClause is not None else "update_all"
    if isinstance(node, ast.DeleteStmt):
        return "delete" if node.whereClause is not None else "delete_all"
    if isinstance(node, ast.AlterTableStmt):
        drops = any("Drop" in getattr(cmd.subtype, "name", "") for cmd in node.cmds or ())
        return "drop" if drops else "alter"
    simple = _SIMPLE.get(type(node))
    if simple is not None:
        return simple
    name = type(node).__name__
    if not name.endswith("Stmt") or name == "RawStmt":
        return None
    if name.startswith("Drop"):
        return "drop"
    if name.startswith(("Create", "Define")):
        return "create"
    if name.startswith(("Alter", "Rename")):
        return "alter"
    return "other"


def _drop_schemas(node: ast.DropStmt) -> list[str]:
    """``DROP SCHEMA s`` names schemas; ``DROP TABLE s.t`` qualified objects name theirs."""
    out: list[str] = []
    schema = getattr(node.removeType, "name", "") == "OBJECT_SCHEMA"
    for item in node.objects or ():
        names = item if isinstance(item, tuple) else (item,)
        parts = [str(p.sval) for p in names if isinstance(p, ast.String) and p.sval]
        if schema and parts:
            out.append(parts[-1].casefold())
        elif len(parts) >= 2:
            out.append(parts[-2].casefold())
    return out


def _constants(args: Any) -> list[str]:
    out: list[str] = []
    for arg in args or ():
        value = getattr(arg, "val", None)
        if isinstance(value, ast.String) and value.sval:
            out.append(value.sval.casefold())
    return out
