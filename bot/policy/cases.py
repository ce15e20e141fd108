"""Table tests and explanations of a policy: ``signoff policy test`` and ``policy explain``.

A cases file is a YAML (or JSON) list, or a mapping with a ``cases`` list, of::

    - name: big transfer needs finance        # optional
      tool: payments.transfer
      arguments: {amount: 25000}              # or `args`
      agent: billing-agent                    # or {id, artifact_digest, labels}; optional
      context: {}                             # optional
      now: "2026-11-21T10:00:00Z"             # optional, for conditions that read `now`
      expect: {tier: confirm, rule: large-transfer}   # or tier/rule at the top level;
                                              # `rule: null` expects no rule to match

``run_cases`` raises ``PolicyError`` (``file:line`` details) when the cases file itself is
malformed; mismatches are reported in the ``CaseReport``, not raised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from yaml.nodes import MappingNode, Node, SequenceNode

from bot.domain import Agent, Tier, ToolCall
from bot.errors import PolicyError
from bot.policy.evaluator import Evaluation, evaluate
from bot.policy.model import Policy
from bot.policy.source import Bad, Problems, Reader, compose, line, read_sources, show, to_plain

_CASE_KEYS = (
    "name",
    "tool",
    "arguments",
    "args",
    "agent",
    "context",
    "now",
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
    when = _when(case["now"]) if "now" in case else now
    result = evaluate(policy, call, to_agent(case.get("agent")), when or now)
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
) -> str:
    """A multi-line account of how ``policy`` treats this call, for ``signoff policy explain``."""
    call = ToolCall(tool=tool, arguments=dict(args), context=dict(context or {}))
    result = evaluate(policy, call, to_agent(agent_id), now or datetime.now(UTC))
    rule = result.rule
    out = [
        f"policy:   {policy.digest}" + (f" (version {policy.version})" if policy.version else ""),
        f"tool:     {tool}",
        f"rule:     {rule.name} ({rule.source})" if rule else "rule:     (none matched)",
        f"tier:     {result.tier.value}",
    ]
    if rule and rule.description:
        out.append(f"about:    {rule.description}")
    out.append("why:")
    out.extend(f"  - {step}" for step in result.trace)
    out.extend(_requirements(result))
    return "\n".join(out)


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
