"""Policy sources: finding the files, parsing YAML with line numbers, typed scalar reads.

Owns the ``file:line: problem`` bookkeeping of the loader: every reader here reports into a
``Problems`` collector instead of raising, so one ``signoff policy check`` lists every
problem at once. YAML is composed to nodes (PyYAML ``compose_all`` with the safe resolver)
so each value keeps the line it came from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_CONSTRUCTOR = SafeConstructor()
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
#: cap on values produced from one document (YAML aliases can expand exponentially)
_MAX_VALUES = 200_000
_MAX_DEPTH = 64


def line(node: Node) -> int:
    """1-based line where ``node`` starts."""
    return int(node.start_mark.line) + 1


@dataclass
class Problems:
    """Collected ``(path, line, message)`` problems, reported in file and line order."""

    order: dict[str, int] = field(default_factory=dict)
    items: list[tuple[str, int, str]] = field(default_factory=list)

    def add(self, path: str, where: Node | int, message: str) -> None:
        self.order.setdefault(path, len(self.order))
        self.items.append((path, where if isinstance(where, int) else line(where), message))

    def lines(self) -> list[str]:
        ranked = sorted(self.items, key=lambda item: (self.order[item[0]], item[1]))
        return [f"{path}:{row}: {message}" for path, row, message in ranked]

    def __len__(self) -> int:
        return len(self.items)


#: suffixes of ``signoff policy test`` case files: skipped when a folder is loaded as policy
CASES_SUFFIXES = (".cases.yaml", ".cases.yml")


def is_cases_file(path: Path) -> bool:
    return path.name.endswith(CASES_SUFFIXES)


def cases_files(paths: Sequence[Path | str]) -> list[Path]:
    """The case files that ship with the policy in ``paths``: ``*.cases.yaml`` in the given
    folders (recursively) and next to the given files (``x.yaml`` → ``x.cases.yaml``)."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and is_cases_file(p)))
        else:
            for suffix in CASES_SUFFIXES:
                sibling = path.with_name(path.stem + suffix)
                if sibling.is_file():
                    found.append(sibling)
    return list(dict.fromkeys(found))


def read_sources(paths: Sequence[Path | str], problems: Problems) -> list[tuple[str, str]]:
    """``(display path, text)`` of every policy file: files as given, folders searched
    recursively for ``*.yaml``/``*.yml`` (but not ``*.cases.yaml``) in sorted order; each
    file once."""
    found: list[tuple[str, str]] = []
    seen: set[Path] = set()
    if not paths:
        problems.add("<policy>", 1, "no policy paths given")
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in {".yaml", ".yml"})
            files = [p for p in files if p.is_file() and not is_cases_file(p)]
            if not files:
                problems.add(str(path), 1, "folder holds no *.yaml or *.yml policy files")
        elif path.exists():
            files = [path]
        else:
            problems.add(str(path), 1, "no such file or folder")
            continue
        for file in files:
            resolved = file.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            try:
                found.append((str(file), file.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                problems.add(str(file), 1, f"cannot read policy file: {exc}")
    return found


def compose(path: str, text: str, problems: Problems) -> list[Node]:
    """The non-empty YAML documents of one file; a syntax error ends the file."""
    documents: list[Node] = []
    before = len(problems)
    try:
        for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
            if node is not None:
                documents.append(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        row = int(mark.line) + 1 if mark is not None else 1
        problems.add(path, row, f"YAML syntax error: {exc.problem or exc.context}")
    except yaml.YAMLError as exc:
        problems.add(path, 1, f"YAML error: {exc}")
    if not documents and len(problems) == before:
        problems.add(path, 1, "file holds no policy documents")
    return documents


class Bad(Exception):
    """A value that cannot be represented: reported at ``node``."""

    def __init__(self, node: Node, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


def scalar(node: ScalarNode) -> Any:
    """The Python value of a scalar under the YAML 1.1 safe schema."""
    build = _CONSTRUCTOR.yaml_constructors.get(node.tag)
    if build is None:
        raise Bad(node, f"unsupported YAML tag {node.tag}")
    try:
        value = build(_CONSTRUCTOR, node)
    except yaml.YAMLError as exc:
        raise Bad(node, f"invalid value: {exc}") from exc
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        raise Bad(node, "numbers must be finite")
    if isinstance(value, bytes):
        raise Bad(node, "binary values are not allowed")
    return value


def scalar_of(node: Node) -> Any:
    """The value of a scalar node; None for mappings and lists."""
    return scalar(node) if isinstance(node, ScalarNode) else None


def to_plain(node: Node) -> Any:
    """The JSON value of a document (dates become ISO strings); raises ``Bad``."""
    budget = iter(range(_MAX_VALUES))

    def walk(item: Node, depth: int) -> Any:
        if next(budget, None) is None:
            raise Bad(item, f"document expands to more than {_MAX_VALUES} values")
        if depth > _MAX_DEPTH:
            raise Bad(item, f"document nests more than {_MAX_DEPTH} levels deep")
        if isinstance(item, MappingNode):
            out: dict[str, Any] = {}
            for key, value in item.value:
                name = scalar(key) if isinstance(key, ScalarNode) else None
                if not isinstance(name, str):
                    raise Bad(key, "mapping keys must be strings")
                out[name] = walk(value, depth + 1)
            return out
        if isinstance(item, SequenceNode):
            return [walk(value, depth + 1) for value in item.value]
        assert isinstance(item, ScalarNode)  # noqa: S101 - the three YAML node kinds
        return scalar(item)

    return walk(node, 0)


def entries(node: MappingNode) -> Iterator[tuple[Node, Node, str]]:
    """``(key node, value node, key)`` of a mapping whose keys ``to_plain`` accepted."""
    for key, value in node.value:
        yield key, value, str(scalar(key)) if isinstance(key, ScalarNode) else "<complex key>"


def duration(text: str) -> timedelta | None:
    """``30s``, ``15m``, ``1h``, ``2d`` or combinations like ``1h30m``; None if malformed."""
    found = _DURATION.fullmatch(text.strip())
    if not text.strip() or found is None:
        return None
    days, hours, minutes, seconds = (int(part) if part else 0 for part in found.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def show(delta: timedelta) -> str:
    """A duration the way policies write it (``90s`` → ``1m30s``)."""
    total = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return "".join(parts) or "0s"


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@-]*")


class Reader:
    """Typed reads of one file's nodes; each failed read reports a problem and returns None."""

    def __init__(self, path: str, problems: Problems) -> None:
        self.path = path
        self.problems = problems

    def fail(self, where: Node, message: str) -> None:
        self.problems.add(self.path, where, message)

    def at(self, node: Node) -> str:
        return f"{self.path}:{line(node)}"

    def fields(
        self,
        node: Node,
        what: str,
        allowed: Collection[str] | None,
        required: Collection[str] = (),
    ) -> dict[str, tuple[Node, Node]] | None:
        """Key → (key node, value node); unknown (unless ``allowed`` is None), duplicate and
        missing keys are problems."""
        if not isinstance(node, MappingNode):
            self.fail(node, f"{what} must be a mapping")
            return None
        out: dict[str, tuple[Node, Node]] = {}
        for key, value, name in entries(node):
            if allowed is not None and name not in allowed:
                expected = ", ".join(sorted(allowed))
                self.fail(key, f"unknown key {name!r} in {what} (allowed: {expected})")
            elif name in out:
                self.fail(key, f"duplicate key {name!r} in {what}")
            else:
                out[name] = (key, value)
        for name in required:
            if name not in out:
                self.fail(node, f"{what} is missing {name!r}")
        return out

    def string(self, node: Node, what: str) -> str | None:
        value = scalar(node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, str) or not value.strip():
            self.fail(node, f"{what} must be a non-empty string")
            return None
        return value

    def name(self, node: Node, what: str) -> str | None:
        value = self.string(node, what)
        if value is not None and not _NAME.fullmatch(value):
            self.fail(node, f"{what} {value!r} may only use letters, digits and . _ : / @ -")
            return None
        return value

    def text(self, node: Node, what: str) -> str | None:
        """A free-text value; numbers and dates are taken as written."""
        value = scalar(node) if isinstance(node, ScalarNode) else None
        if value is None or isinstance(value, bool | dict | list):
            self.fail(node, f"{what} must be a string")
            return None
        return str(value) if not isinstance(value, str) else value

    def integer(self, node: Node, what: str, minimum: int) -> int | None:
        value = scalar(node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(node, f"{what} must be an integer")
            return None
        if value < minimum:
            self.fail(node, f"{what} must be at least {minimum}")
            return None
        return value

    def boolean(self, node: Node, what: str) -> bool | None:
        value = scalar(node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, bool):
            self.fail(node, f"{what} must be true or false")
            return None
        return value

    def duration(self, node: Node, what: str) -> timedelta | None:
        value = scalar(node) if isinstance(node, ScalarNode) else None
        delta = duration(value) if isinstance(value, str) else None
        if delta is None:
            self.fail(node, f"{what} must be a duration like 30s, 15m, 1h or 2d")
            return None
        if delta <= timedelta(0):
            self.fail(node, f"{what} must be longer than zero")
            return None
        return delta

    def names(self, node: Node, what: str) -> tuple[str, ...] | None:
        """A list of distinct names (a single name is accepted as a list of one)."""
        items = node.value if isinstance(node, SequenceNode) else [node]
        out: list[str] = []
        for item in items:
            value = self.string(item, f"each entry of {what}")
            if value is None:
                return None
            if value in out:
                self.fail(item, f"{what} lists {value!r} twice")
                return None
            out.append(value)
        return tuple(out)
