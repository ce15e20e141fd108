"""Evaluating one tool call against the policy (SPEC §5): the hot path of every request.

Rules are tried in order and the first match wins; a rule matches when its tool glob matches
(``fnmatch`` semantics, case-sensitive, cached per tool name) and its ``when`` condition is
true. A condition that errors counts as a match for confirm/block rules and as no match for
auto/notify rules: errors only ever make a call stricter. No match uses
``defaults.unknown_tool`` (confirm or block, never auto).

CEL sees ``args`` (the arguments), ``agent`` (``id``, ``artifact_digest``, ``labels``),
``context`` and ``now``. Nothing here raises for a well-formed ``Policy``; the trace can quote
CEL error text (which may include argument values), so log it at DEBUG only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.domain import Agent, EscalationStep, PolicyRef, Requirement, Tier, ToolCall
from bot.policy.cel import ConditionError, activation
from bot.policy.model import Policy, RateLimit, Rule

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_REQUIREMENT = Requirement(groups=(), quorum=1, all_of=())

# outcomes of trying one rule (compact so the hot path builds no strings)
MATCHED = "matched"
NOT_MATCHED = "not-matched"
ERROR_MATCHED = "error-matched"
ERROR_SKIPPED = "error-skipped"


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What the policy says about one call. ``rule`` is None when no rule matched.

    ``sla``/``escalation``/``deadline_offset`` are set for confirm; ``requirement`` names the
    approvers (confirm) or the groups to inform (notify); ``reason`` is set for block.
    ``steps`` holds ``(rule, outcome, error)`` for each rule whose glob matched the tool.
    """

    tier: Tier
    rule: Rule | None
    requirement: Requirement
    sla: timedelta | None
    escalation: tuple[EscalationStep, ...]
    rate_limit: RateLimit | None
    reason: str | None
    deadline_offset: timedelta | None
    policy: PolicyRef
    tool: str
    steps: tuple[tuple[Rule, str, str | None], ...] = ()

    @property
    def error(self) -> str | None:
        """The condition error that decided this evaluation, if any."""
        for _, outcome, error in self.steps:
            if outcome == ERROR_MATCHED:
                return error
        return None

    @property
    def trace(self) -> tuple[str, ...]:
        """Which rules were tried and why each did or did not match, in order."""
        lines: list[str] = []
        for rule, outcome, error in self.steps:
            head = (
                f"rule {rule.name!r} ({rule.source}, {rule.tier.value}): tool {rule.tool!r} matches"
            )
            if outcome == MATCHED:
                why = f"when `{rule.when}` is true" if rule.when else "no condition"
                lines.append(f"{head}; {why} → MATCH")
            elif outcome == NOT_MATCHED:
                lines.append(f"{head}; when `{rule.when}` is false → no match")
            elif outcome == ERROR_MATCHED:
                lines.append(
                    f"{head}; when `{rule.when}` errored ({error}) → counts as MATCH "
                    f"({rule.tier.value} rule: errors only make a call stricter)"
                )
            else:
                lines.append(
                    f"{head}; when `{rule.when}` errored ({error}) → counts as no match "
                    f"({rule.tier.value} rule: errors never allow)"
                )
        if self.rule is None:
            lines.append(
                f"no rule matches tool {self.tool!r} → defaults.unknown_tool: {self.tier.value}"
            )
        return tuple(lines)


def evaluate(policy: Policy, call: ToolCall, agent: Agent, now: datetime) -> Evaluation:
    """The tier and requirements for ``call`` by ``agent`` at ``now`` (aware UTC)."""
    tool = call.tool
    candidates = policy.candidates(tool)
    steps: list[tuple[Rule, str, str | None]] = []
    act: Any = None
    for rule in candidates:
        condition = rule.condition
        if condition is None:
            steps.append((rule, MATCHED, None))
            return _from_rule(policy, rule, tool, steps)
        if act is None:
            act = activation(_plain(call.arguments), agent_view(agent), _plain(call.context), now)
        try:
            matched = condition.evaluate(act)
        except ConditionError as exc:
            if rule.strict:
                steps.append((rule, ERROR_MATCHED, exc.problem))
                return _from_rule(policy, rule, tool, steps)
            steps.append((rule, ERROR_SKIPPED, exc.problem))
            continue
        if matched:
            steps.append((rule, MATCHED, None))
            return _from_rule(policy, rule, tool, steps)
        steps.append((rule, NOT_MATCHED, None))
    return _unknown(policy, tool, steps)


def agent_view(agent: Agent) -> dict[str, Any]:
    """What CEL sees as ``agent``."""
    return {
        "id": agent.id,
        "artifact_digest": agent.artifact_digest,
        "labels": _plain(agent.labels),
    }


def _plain(value: Mapping[str, Any]) -> Mapping[str, Any]:
    # CEL accepts dicts only; arguments arrive as dicts from json.loads, so this rarely copies
    return value if type(value) is dict else dict(value)


def _from_rule(
    policy: Policy, rule: Rule, tool: str, steps: list[tuple[Rule, str, str | None]]
) -> Evaluation:
    return Evaluation(
        tier=rule.tier,
        rule=rule,
        requirement=rule.requirement,
        sla=rule.sla,
        escalation=rule.escalation,
        rate_limit=rule.rate_limit,
        reason=rule.reason,
        deadline_offset=rule.deadline_offset,
        policy=PolicyRef(policy.digest, policy.version, rule.name),
        tool=tool,
        steps=tuple(steps),
    )


def _unknown(policy: Policy, tool: str, steps: list[tuple[Rule, str, str | None]]) -> Evaluation:
    confirm = policy.unknown_tool is Tier.CONFIRM
    ladder = policy.default_escalation
    return Evaluation(
        tier=policy.unknown_tool,
        rule=None,
        requirement=policy.default_approvers if confirm else _NO_REQUIREMENT,
        sla=policy.default_sla if confirm else None,
        escalation=ladder if confirm else (),
        rate_limit=None,
        reason=None
        if confirm
        else f"no policy rule matches tool {tool!r} (unknown tools are blocked)",
        deadline_offset=ladder[-1].after if confirm and ladder else None,
        policy=PolicyRef(policy.digest, policy.version, None),
        tool=tool,
        steps=tuple(steps),
    )


def rate_key(rule: Rule, agent_id: str, tool: str) -> str:
    """The counter a call to ``tool`` by ``agent_id`` takes from ``rule``'s rate limit."""
    limit = rule.rate_limit
    key = limit.key if limit is not None else "agent"
    if key == "agent":
        return f"{rule.name}|agent={agent_id}"
    if key == "tool":
        return f"{rule.name}|tool={tool}"
    if key == "agent_tool":
        return f"{rule.name}|agent={agent_id}|tool={tool}"
    return f"{rule.name}|global"


def window_start(now: datetime, per: timedelta) -> datetime:
    """Start of the fixed window of length ``per`` (aligned to the Unix epoch) holding ``now``."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return _EPOCH + ((now - _EPOCH) // per) * per
