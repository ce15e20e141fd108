"""Evaluating one tool call against the policy (SPEC §5): the hot path of every request.

Rules are tried in order and the first match wins; a rule matches when its tool glob matches
(``fnmatch`` semantics, case-sensitive, cached per tool name) and its ``when`` condition is
true (a condition that needs a call label the call lacks is false without running CEL; see
``bot.policy.cel.required_call_labels``). A condition that errors counts as a match for
confirm/block rules and as no match for auto/notify rules: errors only ever make a call
stricter. No match uses ``defaults.unknown_tool`` (confirm or block, never auto).

CEL sees ``args`` (the arguments), ``agent`` (``id``, ``artifact_digest`` as registered,
``claimed_artifact_digest`` when the request claimed a different one, ``labels``),
``context``, ``now``, and with ``sessions`` in the policy ``call.labels`` and ``session``
(``labels``, ``calls``, ``key``; see ``bot.policy.session``). Nothing here raises for a
well-formed ``Policy``; the trace can quote CEL error text (which may include argument
values), so log it at DEBUG only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.domain import Agent, EscalationStep, PolicyRef, Requirement, Tier, ToolCall
from bot.policy.cel import NO_CALL, NO_SESSION, ConditionError, activation, session_activation
from bot.policy.model import Decision, Policy, RateLimit, Rule
from bot.policy.session import NO_SESSION as EMPTY_SESSION
from bot.policy.session import SessionView, call_labels

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# outcomes of trying one rule (compact so the hot path builds no strings)
MATCHED = "matched"
NOT_MATCHED = "not-matched"
ERROR_MATCHED = "error-matched"
ERROR_SKIPPED = "error-skipped"


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What the policy says about one call: the ``Decision`` of the rule that matched (or of
    ``defaults.unknown_tool``: then ``rule`` is None) and how it was reached.

    ``sla``/``escalation``/``deadline_offset`` are set for confirm; ``requirement`` names the
    approvers (confirm) or the groups to inform (notify); ``reason`` is set for block.
    ``steps`` holds ``(rule, outcome, error)`` for each rule whose glob matched the tool.
    """

    decision: Decision
    tool: str
    steps: tuple[tuple[Rule, str, str | None], ...] = ()
    #: labels ``sessions.labels`` put on this call, and the session it was judged in
    labels: tuple[str, ...] = ()
    session: SessionView = EMPTY_SESSION

    @property
    def tier(self) -> Tier:
        return self.decision.tier

    @property
    def rule(self) -> Rule | None:
        return self.decision.rule

    @property
    def requirement(self) -> Requirement:
        return self.decision.requirement

    @property
    def sla(self) -> timedelta | None:
        return self.decision.sla

    @property
    def escalation(self) -> tuple[EscalationStep, ...]:
        return self.decision.escalation

    @property
    def rate_limit(self) -> RateLimit | None:
        return self.decision.rate_limit

    @property
    def reason(self) -> str | None:
        return self.decision.reason

    @property
    def deadline_offset(self) -> timedelta | None:
        return self.decision.deadline_offset

    @property
    def policy(self) -> PolicyRef:
        return self.decision.policy

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


def evaluate(
    policy: Policy,
    call: ToolCall,
    agent: Agent,
    now: datetime,
    session: SessionView = EMPTY_SESSION,
) -> Evaluation:
    """The tier and requirements for ``call`` by ``agent`` at ``now`` (aware UTC), in
    ``session`` (the earlier calls the store summarised; empty without a session key)."""
    spec = policy.sessions
    if spec is None:
        return _evaluate_plain(policy, call, agent, now)
    tool = call.tool
    labels: tuple[str, ...] = ()
    seen: Any = NO_SESSION  # what CEL sees as ``session``: built only when a condition needs it
    if session.key is not None:
        seen = session
    act: Any = None  # the full activation, built when the first condition needs it
    stale = False  # ``act`` holds fewer labels than the call has (see the label conditions)
    labels, conditional = spec.for_tool(tool)
    if conditional:  # label conditions see the labels without a condition as call.labels
        seen = _cel(seen)
        act = _activation(call, agent, now, seen, _labels(labels))
        found = call_labels(conditional, labels, act)
        stale, labels = found != labels, found
    candidates = policy.candidates(tool)
    steps: list[tuple[Rule, str, str | None]] = []
    small: Any = None
    for rule in candidates:
        condition = rule.condition
        if condition is None:
            steps.append((rule, MATCHED, None))
            return Evaluation(policy.decision(rule), tool, tuple(steps), labels, session)
        if condition.needs_labels and not condition.needs_labels.issubset(labels):
            steps.append((rule, NOT_MATCHED, None))  # false whatever else it reads
            continue
        try:
            if condition.labels_only:  # e.g. the lethal trifecta: a pure function of labels
                matched = condition.evaluate_labels(labels, session.labels)
            else:
                if act is None or (stale and condition.reads_call):
                    if not condition.session_only or labels:
                        seen = _cel(seen)
                        act = _activation(call, agent, now, seen, _labels(labels))
                        stale = False
                        use = act
                    else:  # reads only session/call, and the call has no labels
                        if small is None:
                            small = session_activation(_cel(seen), NO_CALL)
                        use = small
                else:
                    use = act
                matched = condition.evaluate(use)
        except ConditionError as exc:
            if rule.strict:
                steps.append((rule, ERROR_MATCHED, exc.problem))
                return Evaluation(policy.decision(rule), tool, tuple(steps), labels, session)
            steps.append((rule, ERROR_SKIPPED, exc.problem))
            continue
        if matched:
            steps.append((rule, MATCHED, None))
            return Evaluation(policy.decision(rule), tool, tuple(steps), labels, session)
        steps.append((rule, NOT_MATCHED, None))
    return Evaluation(policy.unknown(tool), tool, tuple(steps), labels, session)


def _evaluate_plain(policy: Policy, call: ToolCall, agent: Agent, now: datetime) -> Evaluation:
    """``evaluate`` for a policy without ``sessions``: the hot path of most deployments, kept
    free of the session bookkeeping (``session``/``call`` are empty for every condition)."""
    tool = call.tool
    steps: list[tuple[Rule, str, str | None]] = []
    act: Any = None
    for rule in policy.candidates(tool):
        condition = rule.condition
        if condition is None:
            steps.append((rule, MATCHED, None))
            return Evaluation(policy.decision(rule), tool, tuple(steps))
        if condition.needs_labels:  # call.labels is empty here: false whatever else it reads
            steps.append((rule, NOT_MATCHED, None))
            continue
        if act is None:
            act = activation(_plain(call.arguments), agent_view(agent), _plain(call.context), now)
        try:
            matched = condition.evaluate(act)
        except ConditionError as exc:
            if rule.strict:
                steps.append((rule, ERROR_MATCHED, exc.problem))
                return Evaluation(policy.decision(rule), tool, tuple(steps))
            steps.append((rule, ERROR_SKIPPED, exc.problem))
            continue
        if matched:
            steps.append((rule, MATCHED, None))
            return Evaluation(policy.decision(rule), tool, tuple(steps))
        steps.append((rule, NOT_MATCHED, None))
    return Evaluation(policy.unknown(tool), tool, tuple(steps))


def _labels(labels: tuple[str, ...]) -> Any:
    return {"labels": list(labels)} if labels else NO_CALL


def _cel(seen: Any) -> Any:
    return seen.cel() if isinstance(seen, SessionView) else seen


def _activation(
    call: ToolCall, agent: Agent, now: datetime, session: Any, labels: Mapping[str, Any]
) -> Any:
    return activation(
        _plain(call.arguments), agent_view(agent), _plain(call.context), now, session, labels
    )


def agent_view(agent: Agent) -> dict[str, Any]:
    """What CEL sees as ``agent``."""
    return {
        "id": agent.id,
        "artifact_digest": agent.artifact_digest,
        "claimed_artifact_digest": agent.claimed_artifact_digest,
        "labels": _plain(agent.labels),
    }


def _plain(value: Mapping[str, Any]) -> Mapping[str, Any]:
    # CEL accepts dicts only; arguments arrive as dicts from json.loads, so this rarely copies
    return value if type(value) is dict else dict(value)


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
