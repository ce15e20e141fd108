"""Table tests and explanations of a policy: ``signoff policy test`` and ``policy explain``.

A cases file is a YAML (or JSON) list, or a mapping with a ``cases`` list, of::

    - name: big transfer needs finance        # optional
      tool: payments.transfer
      arguments: {amount: 25000}              # or `args`
      agent: billing-agent                    # or {id, artifact_digest, labels}; optional
      context: {}                             # optional
      now: "2026-11-21T10:00:00Z"             # optional, for conditions that read `now`
      session:                                # optional: earlier calls of the same session,
        - {tool: crm.read, arguments: {id: 1}}  # oldest first (they share the case's key)
      expect: {tier: confirm, rule: large-transfer}   # or tier/rule at the top level;
                                              # `rule: null` expects no rule to match

``run_cases`` raises ``PolicyError`` (``file:line`` details) when the cases file itself is
malformed; mismatches are reported in the ``CaseReport``, not raised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from yaml.nodes import MappingNode, Node, SequenceNode

from bot.domain import Agent, SessionCalls, Tier, ToolCall
from bot.errors import PolicyError, RequestError
from bot.policy.evaluator import Evaluation, evaluate
from bot.policy.model import Policy
from bot.policy.session import NO_SESSION, SessionView, session_key, summarise
from bot.policy.source import Bad, Problems, Reader, compose, line, read_sources, show, to_plain

_CASE_KEYS = (
    "name",
    "tool",
    "arguments",
    "args",
    "agent",
    "context",
    "now",
    "session",
    "expect",
    "tier",
    "rule",
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class CaseReport:
    total: int
    passed: int
    failures: tuple[str, ...]
    #: names of the rules some case's call ended at (for the coverage lint)
    covered: frozenset[str] = frozenset()

    @property
    def ok(self) -> bool:
        return not self.failures

    def render(self) -> str:
        """The report as text: one line per failure, then a summary line."""
        verdict = "ok" if self.ok else "FAILED"
        summary = f"{verdict}: {self.passed}/{self.total} case(s) passed"
        return "\n".join((*self.failures, summary))


def run_cases(policy: Policy, cases_path: Path | str, *, now: datetime | None = None) -> CaseReport:
    """Evaluate every case in ``cases_path`` against ``policy``; raises ``PolicyError`` when
    the cases file cannot be read or a case is malformed."""
    problems = Problems()
    sources = read_sources([cases_path], problems)
    cases: list[tuple[str, Node, dict[str, Any]]] = []
    for path, text in sources:
        reader = Reader(path, problems)
        for document in compose(path, text, problems):
            cases.extend(_cases(reader, document))
    if problems:
        lines = problems.lines()
        raise PolicyError(f"cases file has {len(lines)} problem(s)", details=lines)
    failures: list[str] = []
    covered: set[str] = set()
    for path, node, case in cases:
        failure = _run_case(policy, case, now or datetime.now(UTC), covered)
        if failure:
            label = case.get("name") or f"{case['tool']} {case.get('arguments', {})}"
            failures.append(f"{path}:{line(node)}: case {label!r}: {failure}")
    return CaseReport(
        total=len(cases),
        passed=len(cases) - len(failures),
        failures=tuple(failures),
        covered=frozenset(covered),
    )


def _cases(reader: Reader, document: Node) -> list[tuple[str, Node, dict[str, Any]]]:
    items = document
    if isinstance(document, MappingNode):
        found = reader.fields(document, "cases file", ("cases",), ("cases",))
        if not found or "cases" not in found:
            return []
        items = found["cases"][1]
    if not isinstance(items, SequenceNode):
        reader.fail(items, "cases must be a list")
        return []
    out = []
    for node in items.value:
        try:
            case = to_plain(node)
        except Bad as exc:
            reader.fail(exc.node, exc.message)
            continue
        if _valid(reader, node, case):
            out.append((reader.path, node, case))
    return out


def _valid(reader: Reader, node: Node, case: Any) -> bool:
    found = reader.fields(node, "case", _CASE_KEYS, ("tool",))
    if found is None or "tool" not in found:
        return False
    expect = case.get("expect", {})
    if not isinstance(expect, dict) or set(expect) - {"tier", "rule"}:
        reader.fail(node, "case `expect` must be a mapping with tier and/or rule")
        return False
    if not ({"tier", "rule"} & (set(expect) | set(case))):
        reader.fail(node, "case expects nothing: give expect.tier and/or expect.rule")
        return False
    tier = expect.get("tier", case.get("tier"))
    if tier is not None and tier not in {t.value for t in Tier}:
        reader.fail(node, f"case expects unknown tier {tier!r}")
        return False
    for key in ("arguments", "args", "context"):
        if key in case and not isinstance(case[key], dict):
            reader.fail(found[key][1], f"case {key} must be a mapping")
            return False
    agent = case.get("agent")
    if agent is not None and not (
        isinstance(agent, str) or (isinstance(agent, dict) and isinstance(agent.get("id"), str))
    ):
        reader.fail(found["agent"][1], "case agent must be an id or a mapping with an id")
        return False
    session = case.get("session")
    if session is not None and not (
        isinstance(session, list)
        and all(
            isinstance(item, dict)
            and isinstance(item.get("tool"), str)
            and set(item) <= {"tool", "arguments", "args", "context"}
            and all(isinstance(item.get(k, {}), dict) for k in ("arguments", "args", "context"))
            for item in session
        )
    ):
        reader.fail(
            found["session"][1],
            "case session must be a list of earlier calls ({tool, arguments, context})",
        )
        return False
    if "now" in case and _when(case["now"]) is None:
        reader.fail(found["now"][1], "case now must be an ISO 8601 timestamp")
        return False
    return True


def _when(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _run_case(policy: Policy, case: dict[str, Any], now: datetime, covered: set[str]) -> str | None:
    call = ToolCall(
        tool=str(case["tool"]),
        arguments=case.get("arguments", case.get("args", {})),
        context=case.get("context", {}),
    )
    when = (_when(case["now"]) if "now" in case else now) or now
    agent = to_agent(case.get("agent"))
    try:
        session, _ = replay_session(policy, call, agent, case.get("session") or [], when)
    except RequestError as exc:
        return f"the call is refused: {exc.message}"
    result = evaluate(policy, call, agent, when, session)
    expect = case.get("expect", {})
    got_rule = result.rule.name if result.rule else None
    if got_rule is not None:
        covered.add(got_rule)
    wrong = []
    if (tier := expect.get("tier", case.get("tier"))) is not None and tier != result.tier.value:
        wrong.append(f"expected tier {tier}, got {result.tier.value}")
    if "rule" in expect or "rule" in case:
        rule = expect["rule"] if "rule" in expect else case["rule"]
        if rule != got_rule:
            wrong.append(f"expected rule {rule!r}, got {got_rule!r}")
    if not wrong:
        return None
    return "; ".join(wrong) + " | " + " | ".join(result.trace)


def replay_session(
    policy: Policy,
    call: ToolCall,
    agent: Agent,
    earlier: Sequence[Mapping[str, Any]],
    now: datetime,
) -> tuple[SessionView, dict[str, str]]:
    """The session ``call`` would be judged in after the ``earlier`` calls (oldest first,
    all in the call's session and window), and ``{call id: tool}`` naming them (``#1``…).
    Labels of earlier calls are worked out by the policy, as the server does. Raises
    ``RequestError`` for a session key of the wrong type."""
    spec = policy.sessions
    if spec is None:
        return NO_SESSION, {}
    key = session_key(spec, call.arguments, call.context, agent.id)
    if key is None:
        return NO_SESSION, {}
    rows: list[SessionCalls] = []
    tools: dict[str, str] = {}
    for number, item in enumerate(earlier, start=1):
        before = ToolCall(
            tool=str(item["tool"]),
            arguments=item.get("arguments", item.get("args", {})),
            context={**item.get("context", {}), **_with_key(spec.path, key)},
        )
        name = f"#{number:04d}"
        tools[name] = before.tool
        labels = evaluate(policy, before, agent, now).labels
        rows.append(SessionCalls(labels, 1, name, name, now))
    return summarise(key, rows), tools


def _with_key(path: tuple[str, ...], key: str) -> dict[str, Any]:
    """The context entry that puts an earlier call in the same session (context keys only)."""
    if path[0] != "context":
        return {}
    value: Any = key
    for part in reversed(path[1:]):
        value = {part: value}
    return dict(value)


def to_agent(value: str | Mapping[str, Any] | None) -> Agent:
    """An ``Agent`` for a case or an explanation (an id, or id/artifact_digest/labels)."""
    if value is None:
        return Agent(id="policy-test", token_hash="", created_at=_EPOCH)
    if isinstance(value, str):
        return Agent(id=value, token_hash="", created_at=_EPOCH)
    labels = value.get("labels") or {}
    return Agent(
        id=str(value["id"]),
        token_hash="",
        created_at=_EPOCH,
        artifact_digest=value.get("artifact_digest"),
        labels={str(k): str(v) for k, v in labels.items()},
    )


def explain(
    policy: Policy,
    tool: str,
    args: Mapping[str, Any],
    agent_id: str | None = None,
    *,
    context: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    session: SessionView | Sequence[Mapping[str, Any]] = (),
    tools: Mapping[str, str] | None = None,
) -> str:
    """A multi-line account of how ``policy`` treats this call, for ``signoff policy explain``.

    ``session`` is either the earlier calls (replayed as ``policy test`` does) or a view the
    store summarised, with ``tools`` naming its request ids. Raises ``RequestError`` for a
    session key of the wrong type."""
    call = ToolCall(tool=tool, arguments=dict(args), context=dict(context or {}))
    agent = to_agent(agent_id)
    when = now or datetime.now(UTC)
    if isinstance(session, SessionView):
        view, names = session, dict(tools or {})
    else:
        view, names = replay_session(policy, call, agent, session, when)
    result = evaluate(policy, call, agent, when, view)
    rule = result.rule
    out = [
        f"policy:   {policy.digest}" + (f" (version {policy.version})" if policy.version else ""),
        f"tool:     {tool}",
        f"rule:     {rule.name} ({rule.source})" if rule else "rule:     (none matched)",
        f"tier:     {result.tier.value}",
    ]
    if rule and rule.description:
        out.append(f"about:    {rule.description}")
    out.extend(_session_lines(policy, result, names))
    out.append("why:")
    out.extend(f"  - {step}" for step in result.trace)
    out.extend(_requirements(result))
    return "\n".join(out)


def _session_lines(policy: Policy, result: Evaluation, tools: Mapping[str, str]) -> list[str]:
    """This call's labels and, for each session label, the earlier calls that put it there."""
    if policy.sessions is None:
        return []
    session = result.session
    out = [f"labels:   {', '.join(result.labels) or '(none)'}"]
    if session.key is None:
        out.append(f"session:  none ({policy.sessions.key} not given: a session of its own)")
        return out
    out.append(f"session:  {session.key!r}, {session.calls} earlier call(s) in the window")
    for label, origin in sorted(session.origins().items()):
        first = _call_name(origin.first_request, tools)
        line = f"  - {label}: put there by {origin.count} call(s), first {first}"
        if origin.count > 1:
            line += f", latest {_call_name(origin.last_request, tools)}"
        out.append(line)
    if not session.labels:
        out.append("  - (no labels yet)")
    return out


def _call_name(request_id: str, tools: Mapping[str, str]) -> str:
    tool = tools.get(request_id)
    if request_id.startswith("#"):
        return f"call {request_id.lstrip('#').lstrip('0') or '0'} ({tool})"
    return f"request {request_id}" + (f" ({tool})" if tool else "")


def _requirements(result: Evaluation) -> list[str]:
    out = []
    need = result.requirement
    if result.tier is Tier.CONFIRM:
        if need.groups:
            out.append(
                f"approvers: {need.quorum} distinct human(s) from any of {', '.join(need.groups)}"
            )
        if need.all_of:
            out.append(f"approvers: one approval from each of {', '.join(need.all_of)}")
        if result.sla is not None:
            out.append(f"sla:       {show(result.sla)}")
        out.append("escalation:")
        for step in result.escalation:
            acts = [
                name
                for name, on in (("remind", step.remind), ("page", step.page), ("deny", step.deny))
                if on
            ]
            if step.to:
                acts.insert(0, f"escalate to {step.to}")
            out.append(f"  - after {show(step.after)}: {', '.join(acts)}")
    elif result.tier is Tier.NOTIFY:
        out.append(f"informs:   {', '.join(need.all_groups)}")
    elif result.tier is Tier.BLOCK:
        out.append(f"reason:    {result.reason}")
    if result.rate_limit is not None:
        limit = result.rate_limit
        out.append(f"rate limit: {limit.max} per {show(limit.per)} per {limit.key}")
    if result.error:
        out.append(f"note:      decided by a condition error ({result.error})")
    return out
