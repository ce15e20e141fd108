"""Sessions (SPEC §5): which earlier calls a rule may see, and the labels they carry.

``sessions.key`` names where a call says which session it belongs to (default
``context.session_id``; any ``context.…``, ``args.…`` or ``agent.id`` path). ``sessions.window``
bounds how far back the session reaches (default 1h). ``sessions.labels`` attaches labels to
calls by tool glob and an optional CEL ``when`` (same variables as rule conditions; there
``call.labels`` holds the call's labels that have no condition); a label condition that errors
attaches the label (a label only ever makes a later call stricter).

CEL then sees ``call.labels`` (this call's labels), ``session.labels`` (labels of the earlier
calls in the window), ``session.calls`` (how many earlier calls) and ``session.key``. A call
without a session key is a session of its own: both are empty. A key that is there but is not
a non-empty string (at most 256 characters) is refused with ``RequestError`` (HTTP 400).

Every call recorded in the window counts, whatever became of it (a denied call's label still
counts: stricter). Calls submitted concurrently in one session do not see each other; neither
can carry the other's result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from yaml.nodes import Node

from bot.domain import SessionCalls
from bot.errors import RequestError
from bot.policy.cel import Condition, ConditionError, InvalidCondition, compile_condition
from bot.policy.model import tool_matcher
from bot.policy.source import Reader

DEFAULT_KEY = "context.session_id"
DEFAULT_WINDOW = timedelta(hours=1)
MAX_KEY_CHARS = 256
_CACHE_LIMIT = 4096
_KEY_ROOTS = ("context", "args", "agent")
_KEYS = ("key", "window", "labels")


@dataclass(frozen=True, slots=True)
class LabelSpec:
    name: str
    tools: tuple[str, ...]
    when: str | None = None
    source: str = ""
    condition: Condition | None = field(default=None, compare=False, repr=False)
    _matchers: tuple[Any, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_matchers", tuple(tool_matcher(glob) for glob in self.tools))

    def matches_tool(self, tool: str) -> bool:
        return any(match(tool) for match in self._matchers)


@dataclass(frozen=True, slots=True)
class SessionSpec:
    key: str = DEFAULT_KEY
    window: timedelta = DEFAULT_WINDOW
    labels: Mapping[str, LabelSpec] = field(default_factory=dict)
    source: str = ""
    _by_tool: dict[str, tuple[tuple[str, ...], tuple[LabelSpec, ...]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.key.split("."))

    def for_tool(self, tool: str) -> tuple[tuple[str, ...], tuple[LabelSpec, ...]]:
        """Labels ``tool`` always gets (sorted), and the labels whose condition decides
        (cached per tool name, like the rule candidates)."""
        found = self._by_tool.get(tool)
        if found is None:
            matching = [label for label in self.labels.values() if label.matches_tool(tool)]
            always = tuple(sorted(label.name for label in matching if label.condition is None))
            found = (always, tuple(label for label in matching if label.condition is not None))
            if len(self._by_tool) >= _CACHE_LIMIT:
                self._by_tool.clear()
            self._by_tool[tool] = found
        return found


@dataclass(frozen=True, slots=True)
class LabelOrigin:
    """Which earlier calls put a label on the session: how many, the first and the latest."""

    count: int
    first_request: str
    last_request: str
    last_at: datetime


class SessionView:
    """What one evaluation knows about its session (built from the store's summary rows).

    ``labels`` are the label names on the session's earlier calls (sorted); ``origins()``
    says which calls put each one there (worked out only when asked: ``policy explain``).
    A plain slotted class: one is built on every evaluation."""

    __slots__ = ("_cel", "calls", "key", "labels", "rows")

    def __init__(
        self,
        key: str | None = None,
        calls: int = 0,
        labels: tuple[str, ...] = (),
        rows: tuple[SessionCalls, ...] = (),
    ) -> None:
        self.key = key
        self.calls = calls
        self.labels = labels
        self.rows = rows
        self._cel: dict[str, Any] | None = None

    def cel(self) -> dict[str, Any]:
        """What CEL sees as ``session`` (built once per view, when a condition needs it)."""
        if self._cel is None:
            self._cel = {"key": self.key, "calls": self.calls, "labels": list(self.labels)}
        return self._cel

    def __repr__(self) -> str:
        return f"SessionView(key={self.key!r}, calls={self.calls}, labels={self.labels!r})"

    def origins(self) -> dict[str, LabelOrigin]:
        out: dict[str, LabelOrigin] = {}
        for row in self.rows:
            for label in row.labels:
                seen = out.get(label)
                if seen is None:
                    out[label] = LabelOrigin(
                        row.count, row.first_request, row.last_request, row.last_at
                    )
                else:
                    out[label] = LabelOrigin(
                        seen.count + row.count,
                        min(seen.first_request, row.first_request),
                        max(seen.last_request, row.last_request),
                        max(seen.last_at, row.last_at),
                    )
        return out


NO_SESSION = SessionView()


def summarise(key: str, rows: Sequence[SessionCalls]) -> SessionView:
    """Fold the store's per-label-set summary rows into one view (cheap: it runs on every
    evaluation; the per-label origins wait until ``origins()`` is asked)."""
    calls = 0
    names: set[str] = set()
    for row in rows:
        calls += row.count
        names.update(row.labels)
    return SessionView(key=key, calls=calls, labels=tuple(sorted(names)), rows=tuple(rows))


def session_key(spec: SessionSpec, arguments: Mapping[str, Any], context: Mapping[str, Any],
                agent_id: str) -> str | None:  # fmt: skip
    """The call's session key, or None when it has none. Raises ``RequestError`` for a key
    of the wrong type, an empty one or one longer than 256 characters."""
    root, *rest = spec.path
    value: Any = {"context": context, "args": arguments, "agent": {"id": agent_id}}[root]
    for part in rest:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestError(
            f"{spec.key} is the session key and must be a string, not {_json_type(value)}"
        )
    if not value or len(value) > MAX_KEY_CHARS:
        raise RequestError(f"{spec.key} must be 1 to {MAX_KEY_CHARS} characters long")
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def call_labels(
    conditional: Sequence[LabelSpec], always: tuple[str, ...], act: Any
) -> tuple[str, ...]:
    """``always`` plus the ``conditional`` labels whose condition holds for activation
    ``act`` (there ``call.labels`` holds ``always``); a condition that errors attaches its
    label, which can only make later calls stricter."""
    extra: list[str] = []
    for label in conditional:
        assert label.condition is not None  # noqa: S101 - for_tool sorted them so
        try:
            if not label.condition.evaluate(act):
                continue
        except ConditionError:
            pass
        extra.append(label.name)
    return tuple(sorted((*always, *extra))) if extra else always


def read_sessions(reader: Reader, node: Node) -> SessionSpec | None:
    """The ``sessions`` block, or None after reporting its problems."""
    found = reader.fields(node, "sessions", _KEYS)
    if found is None:
        return None
    before = len(reader.problems)
    key, window = DEFAULT_KEY, DEFAULT_WINDOW
    if "key" in found:
        key = reader.string(found["key"][1], "sessions.key") or key
        parts = key.split(".")
        if (
            len(parts) < 2
            or parts[0] not in _KEY_ROOTS
            or not all(part.isidentifier() for part in parts[1:])
            or (parts[0] == "agent" and parts[1:] != ["id"])
        ):
            reader.fail(
                found["key"][1],
                f"sessions.key must be a path like context.session_id, args.NAME or agent.id, "
                f"not {key!r}",
            )
    if "window" in found:
        window = reader.duration(found["window"][1], "sessions.window") or window
    labels: dict[str, LabelSpec] = {}
    if "labels" in found:
        labels = _read_labels(reader, found["labels"][1])
    if len(reader.problems) > before:
        return None
    return SessionSpec(key=key, window=window, labels=labels, source=reader.at(node))


def _read_labels(reader: Reader, node: Node) -> dict[str, LabelSpec]:
    out: dict[str, LabelSpec] = {}
    for name, (key_node, value) in (reader.fields(node, "sessions.labels", None) or {}).items():
        if reader.name(key_node, "label name") is None:
            continue
        label = _read_label(reader, name, key_node, value)
        if label is not None:
            out[name] = label
    return out


def _read_label(reader: Reader, name: str, key_node: Node, node: Node) -> LabelSpec | None:
    what = f"label {name!r}"
    found = reader.fields(node, what, ("tools", "when", "description"), ("tools",))
    if found is None or "tools" not in found:
        return None
    tools = reader.names(found["tools"][1], f"{what} tools")
    when = condition = None
    if "when" in found and (when := reader.string(found["when"][1], f"{what} when")):
        try:
            condition = compile_condition(when, f"{reader.at(found['when'][1])} ({what})")
        except InvalidCondition as exc:
            reader.fail(found["when"][1], exc.problem)
            return None
    if "description" in found:
        reader.text(found["description"][1], f"{what} description")
    if not tools:
        if tools is not None:
            reader.fail(found["tools"][1], f"{what} needs at least one tool glob")
        return None
    return LabelSpec(name, tools, when, reader.at(key_node), condition)
