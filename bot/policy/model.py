"""The loaded tool policy (SPEC §5): people, groups, rules and defaults as frozen values.

Built only by ``bot.policy.loader``; read by the evaluator, the service and the adapters
(which route cards with ``GroupSpec``). Compiled parts (tool matchers, CEL conditions, the
per-tool candidate cache) ride along but take no part in equality.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from fnmatch import translate
from typing import TYPE_CHECKING, Literal

from bot.domain import EscalationStep, PolicyRef, Requirement, Tier
from bot.policy.cel import Condition
from bot.policy.people import NOBODY, People

if TYPE_CHECKING:
    from bot.policy.session import SessionSpec

RateKey = Literal["agent", "tool", "agent_tool", "global"]
RATE_KEYS: tuple[RateKey, ...] = ("agent", "tool", "agent_tool", "global")

NO_APPROVERS = Requirement()

#: how many distinct tool names the candidate cache remembers before starting over
_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class SlackRoute:
    """Cards go to ``channel``; approvers are ``users`` plus members of ``usergroup``."""

    channel: str | None = None
    usergroup: str | None = None
    users: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TeamsRoute:
    """Cards go to ``conversation_id`` at ``service_url``; approvers are the Entra ``users``."""

    service_url: str
    conversation_id: str
    tenant_id: str | None = None
    users: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ConsoleRoute:
    """Console logins allowed to decide for the group."""

    users: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EmailRoute:
    """``email: {}``: the group's members (people with an ``email``) get signed links."""


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """Where a group's cards go and who decides for it: ``members`` (people keys, SPEC §5)
    plus the older per-platform ``users`` lists of its routes."""

    name: str
    slack: SlackRoute | None = None
    teams: TeamsRoute | None = None
    console: ConsoleRoute | None = None
    description: str | None = None
    source: str = ""
    members: tuple[str, ...] = ()
    email: EmailRoute | None = None


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``max`` calls per fixed window of ``per``, counted per ``key``."""

    max: int
    per: timedelta
    key: RateKey = "agent"


def tool_matcher(glob: str) -> Callable[[str], bool]:
    """Case-sensitive ``fnmatch`` semantics (``*`` also crosses dots), compiled once."""
    if not any(ch in glob for ch in "*?["):
        return glob.__eq__
    match = re.compile(translate(glob)).match
    return lambda tool: match(tool) is not None


@dataclass(frozen=True, slots=True)
class Rule:
    """One policy rule. For confirm rules ``sla`` and ``escalation`` are the effective
    values (defaults applied; the ladder always ends in a deny step)."""

    name: str
    tool: str
    when: str | None
    tier: Tier
    requirement: Requirement = NO_APPROVERS
    sla: timedelta | None = None
    escalation: tuple[EscalationStep, ...] = ()
    rate_limit: RateLimit | None = None
    reason: str | None = None
    source: str = ""
    description: str | None = None
    editable: bool = False
    step_up: str | None = None
    condition: Condition | None = field(default=None, compare=False, repr=False)
    matches_tool: Callable[[str], bool] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "matches_tool", tool_matcher(self.tool))

    @property
    def strict(self) -> bool:
        """Confirm/block: a condition error counts as a match (errors only make calls stricter)."""
        return self.tier is Tier.CONFIRM or self.tier is Tier.BLOCK

    @property
    def deadline_offset(self) -> timedelta | None:
        """When, after creation, a confirm request is denied for want of a decision."""
        return self.escalation[-1].after if self.escalation else None


@dataclass(frozen=True, slots=True)
class Decision:
    """What one rule (or ``defaults.unknown_tool``) decides, whatever the call: built once
    per policy so the evaluator only pairs it with the call's trace."""

    tier: Tier
    rule: Rule | None
    requirement: Requirement
    sla: timedelta | None
    escalation: tuple[EscalationStep, ...]
    rate_limit: RateLimit | None
    reason: str | None
    deadline_offset: timedelta | None
    policy: PolicyRef


@dataclass(frozen=True, slots=True)
class Policy:
    """All policy files together. ``digest`` is ``sha256:<hex>`` of the canonical content."""

    rules: tuple[Rule, ...]
    groups: Mapping[str, GroupSpec]
    unknown_tool: Tier
    default_sla: timedelta
    digest: str
    version: str | None = None
    name: str | None = None
    files: tuple[str, ...] = ()
    default_approvers: Requirement = NO_APPROVERS
    default_escalation: tuple[EscalationStep, ...] = ()
    people: People = NOBODY
    sessions: SessionSpec | None = None
    #: key id that signed this bundle (set by the holder when ``policy.trusted_keys`` is on)
    signer: str | None = None
    _candidates: dict[str, tuple[Rule, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    _decisions: dict[str, Decision] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        decisions = {rule.name: self._decide(rule) for rule in self.rules}
        object.__setattr__(self, "_decisions", decisions)

    def ref(self, rule: str | None) -> PolicyRef:
        return PolicyRef(digest=self.digest, version=self.version, rule=rule, signer=self.signer)

    def decision(self, rule: Rule) -> Decision:
        """What ``rule`` decides (precomputed)."""
        return self._decisions.get(rule.name) or self._decide(rule)

    def unknown(self, tool: str) -> Decision:
        """What ``defaults.unknown_tool`` decides for ``tool``."""
        if self.unknown_tool is not Tier.CONFIRM:
            reason = f"no policy rule matches tool {tool!r} (unknown tools are blocked)"
            return Decision(
                self.unknown_tool, None, NO_APPROVERS, None, (), None, reason, None, self.ref(None)
            )
        found = self._decisions.get("")
        if found is None:
            ladder = self.default_escalation
            found = Decision(
                tier=Tier.CONFIRM,
                rule=None,
                requirement=self.default_approvers,
                sla=self.default_sla,
                escalation=ladder,
                rate_limit=None,
                reason=None,
                deadline_offset=ladder[-1].after if ladder else self.default_sla,
                policy=self.ref(None),
            )
            self._decisions[""] = found
        return found

    def _decide(self, rule: Rule) -> Decision:
        return Decision(
            tier=rule.tier,
            rule=rule,
            requirement=rule.requirement,
            sla=rule.sla,
            escalation=rule.escalation,
            rate_limit=rule.rate_limit,
            reason=rule.reason,
            deadline_offset=rule.deadline_offset,
            policy=self.ref(rule.name),
        )

    def candidates(self, tool: str) -> tuple[Rule, ...]:
        """Rules whose tool glob matches ``tool``, in policy order (cached per tool name)."""
        found = self._candidates.get(tool)
        if found is None:
            found = tuple(rule for rule in self.rules if rule.matches_tool(tool))
            if len(self._candidates) >= _CACHE_LIMIT:
                self._candidates.clear()
            self._candidates[tool] = found
        return found
