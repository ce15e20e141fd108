"""Reading one policy rule (and the approver and escalation blocks ``defaults`` shares).

Semantics decided here (SPEC §5):
- ``confirm`` rules must name approvers (``groups`` and/or ``all_of``); ``notify`` rules too
  (they are the groups informed). ``auto`` and ``block`` rules take no approvers.
- ``sla`` and ``escalation`` belong to confirm rules. Steps are ordered strictly by ``after``;
  the only ``action`` is ``deny`` (``allow`` and anything else are rejected); at most one deny
  step, and it must be last. Without a deny step the ladder ends in an implicit deny at the
  SLA (the rule's, else ``defaults.sla``), so every step must come before it.
- ``rate_limit`` belongs to auto/notify rules; ``reason`` is required on block rules.
- ``editable`` (approvers may change the arguments before approving) and ``step_up``
  (``webauthn``: approving needs the approver's security key) belong to confirm rules.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta

from yaml.nodes import Node, SequenceNode

from bot.domain import EscalationStep, Requirement, Tier
from bot.policy.cel import InvalidCondition, compile_condition
from bot.policy.model import RATE_KEYS, RateLimit, Rule
from bot.policy.source import Reader, scalar_of, show

RULE_KEYS = (
    "name", "description", "tool", "when", "tier", "approvers", "sla", "escalation",
    "rate_limit", "reason", "editable", "step_up",
)  # fmt: skip
STEP_UPS = ("webauthn",)
_STEP_KEYS = ("after", "remind", "to", "page", "action")


def read_tier(reader: Reader, node: Node, what: str, allowed: Collection[Tier]) -> Tier | None:
    value = scalar_of(node)
    choices = " | ".join(tier.value for tier in allowed)
    if not isinstance(value, str) or value not in {tier.value for tier in allowed}:
        reader.fail(node, f"{what} must be one of {choices}, not {value!r}")
        return None
    return Tier(value)


def read_approvers(reader: Reader, node: Node, groups: Collection[str]) -> Requirement | None:
    found = reader.fields(node, "approvers", ("groups", "quorum", "all_of"))
    if found is None:
        return None
    any_of: tuple[str, ...] | None = ()
    all_of: tuple[str, ...] | None = ()
    quorum: int | None = 1
    if "groups" in found:
        any_of = _known(reader, found["groups"][1], "approvers.groups", groups)
    if "all_of" in found:
        all_of = _known(reader, found["all_of"][1], "approvers.all_of", groups)
    if "quorum" in found:
        quorum = reader.integer(found["quorum"][1], "approvers.quorum", 1)
        if quorum is not None and "groups" not in found:
            reader.fail(found["quorum"][0], "approvers.quorum counts approvals from `groups`")
    if any_of is None or all_of is None or quorum is None:
        return None
    if not any_of and not all_of:
        reader.fail(node, "approvers must name at least one group (groups or all_of)")
        return None
    return Requirement(groups=any_of, quorum=quorum, all_of=all_of)


def _known(
    reader: Reader, node: Node, what: str, groups: Collection[str]
) -> tuple[str, ...] | None:
    names = reader.names(node, what)
    if names is None:
        return None
    items = node.value if isinstance(node, SequenceNode) else [node]
    unknown = [(name, item) for name, item in zip(names, items, strict=True) if name not in groups]
    for name, item in unknown:
        reader.fail(item, f"{what} names unknown group {name!r}")
    return None if unknown else names


def read_escalation(
    reader: Reader, node: Node, groups: Collection[str], sla: timedelta
) -> tuple[EscalationStep, ...] | None:
    """The ladder with its final deny (explicit, or implicit at ``sla``)."""
    if not isinstance(node, SequenceNode):
        reader.fail(node, "escalation must be a list of steps")
        return None
    steps: list[EscalationStep] = []
    items: list[Node] = []
    ok = True
    for item in node.value:
        step = _read_step(reader, item, groups)
        if step is None:
            ok = False
            continue
        if steps and steps[-1].deny:
            reader.fail(item, "the deny step must be the last escalation step")
            ok = False
        elif steps and step.after <= steps[-1].after:
            reader.fail(
                item,
                f"escalation steps must be ordered by `after`: {show(step.after)} "
                f"does not come after {show(steps[-1].after)}",
            )
            ok = False
        steps.append(step)
        items.append(item)
    if not ok:
        return None
    if steps and steps[-1].deny:
        return tuple(steps)
    for step, item in zip(steps, items, strict=True):
        if step.after >= sla:
            reader.fail(
                item,
                f"escalation step at {show(step.after)} would never run: without a deny step "
                f"the request is denied at the SLA ({show(sla)}); end with `action: deny`",
            )
            return None
    return (*steps, EscalationStep(after=sla, deny=True))


def _read_step(reader: Reader, node: Node, groups: Collection[str]) -> EscalationStep | None:
    found = reader.fields(node, "escalation step", _STEP_KEYS, required=("after",))
    if found is None or "after" not in found:
        return None
    after = reader.duration(found["after"][1], "escalation step `after`")
    remind = page = deny = False
    to: str | None = None
    ok = after is not None
    if "remind" in found:
        ok = (value := reader.boolean(found["remind"][1], "remind")) is not None and ok
        remind = bool(value)
    if "page" in found:
        ok = (value := reader.boolean(found["page"][1], "page")) is not None and ok
        page = bool(value)
    if "to" in found:
        to = reader.string(found["to"][1], "escalation `to`")
        if to is not None and to not in groups:
            reader.fail(found["to"][1], f"escalation `to` names unknown group {to!r}")
            to = None
        ok = to is not None and ok
    if "action" in found:
        action = scalar_of(found["action"][1])
        if action != "deny":
            reader.fail(
                found["action"][1],
                f"escalation action {action!r} is not allowed: the only action is deny "
                "(a timeout never allows)",
            )
            ok = False
        deny = True
    if ok and not (remind or page or deny or to):
        reader.fail(node, "escalation step does nothing: set remind, to, page or action: deny")
        ok = False
    if not ok or after is None:
        return None
    return EscalationStep(after=after, remind=remind, to=to, page=page, deny=deny)


def read_rate_limit(reader: Reader, node: Node) -> RateLimit | None:
    found = reader.fields(node, "rate_limit", ("max", "per", "key"), required=("max", "per"))
    if found is None or "max" not in found or "per" not in found:
        return None
    most = reader.integer(found["max"][1], "rate_limit.max", 1)
    per = reader.duration(found["per"][1], "rate_limit.per")
    key = "agent"
    if "key" in found:
        value = scalar_of(found["key"][1])
        if value not in RATE_KEYS:
            reader.fail(found["key"][1], f"rate_limit.key must be one of {' | '.join(RATE_KEYS)}")
            return None
        key = value
    if most is None or per is None:
        return None
    return RateLimit(max=most, per=per, key=key)  # type: ignore[arg-type]


def read_rule(
    reader: Reader, node: Node, groups: Collection[str], default_sla: timedelta
) -> Rule | None:
    """One rule, or None after reporting every problem found in it."""
    found = reader.fields(node, "rule", RULE_KEYS, required=("name", "tool", "tier"))
    if found is None:
        return None
    problems_before = len(reader.problems)
    get = found.get
    name = reader.name(found["name"][1], "rule name") if "name" in found else None
    tool = reader.string(found["tool"][1], "rule tool") if "tool" in found else None
    tier = read_tier(reader, found["tier"][1], "tier", tuple(Tier)) if "tier" in found else None
    label = f"rule {name!r}" if name else "rule"
    condition = None
    when = None
    if (entry := get("when")) is not None and (when := reader.string(entry[1], "when")):
        try:
            condition = compile_condition(when, f"{reader.at(entry[1])} ({label})")
        except InvalidCondition as exc:
            reader.fail(entry[1], exc.problem)
    description = reason = None
    if (entry := get("description")) is not None:
        description = reader.text(entry[1], "description")
    if (entry := get("reason")) is not None:
        reason = reader.text(entry[1], "reason")
    requirement = Requirement()
    sla: timedelta | None = None
    escalation: tuple[EscalationStep, ...] = ()
    rate_limit = None
    if tier is not None:
        _forbid(reader, found, tier, label)
        if tier in (Tier.CONFIRM, Tier.NOTIFY):
            if "approvers" not in found:
                reader.fail(node, f"{label} is {tier.value} and must name approvers")
            else:
                requirement = read_approvers(reader, found["approvers"][1], groups) or requirement
        if tier is Tier.CONFIRM:
            sla = default_sla
            if "sla" in found:
                sla = reader.duration(found["sla"][1], "sla") or default_sla
            if "escalation" in found:
                escalation = read_escalation(reader, found["escalation"][1], groups, sla) or ()
            else:
                escalation = (EscalationStep(after=sla, deny=True),)
        if "rate_limit" in found and tier in (Tier.AUTO, Tier.NOTIFY):
            rate_limit = read_rate_limit(reader, found["rate_limit"][1])
        if tier is Tier.BLOCK and "reason" not in found:
            reader.fail(node, f"{label} is block and must give a reason")
    editable, step_up = _approver_options(reader, found)
    if len(reader.problems) > problems_before or name is None or tool is None or tier is None:
        return None
    return Rule(
        name=name,
        tool=tool,
        when=when,
        tier=tier,
        requirement=requirement,
        sla=sla,
        escalation=escalation,
        rate_limit=rate_limit,
        reason=reason,
        source=reader.at(node),
        description=description,
        editable=editable,
        step_up=step_up,
        condition=condition,
    )


def _approver_options(
    reader: Reader, found: dict[str, tuple[Node, Node]]
) -> tuple[bool, str | None]:
    editable, step_up = False, None
    if "editable" in found:
        value = scalar_of(found["editable"][1])
        if not isinstance(value, bool):
            reader.fail(found["editable"][1], f"editable must be true or false, not {value!r}")
        else:
            editable = value
    if "step_up" in found:
        value = scalar_of(found["step_up"][1])
        if value not in STEP_UPS:
            reader.fail(
                found["step_up"][1], f"step_up must be one of {' | '.join(STEP_UPS)}, not {value!r}"
            )
        else:
            step_up = str(value)
    return editable, step_up


_ONLY = {
    "approvers": (Tier.CONFIRM, Tier.NOTIFY),
    "sla": (Tier.CONFIRM,),
    "escalation": (Tier.CONFIRM,),
    "editable": (Tier.CONFIRM,),
    "step_up": (Tier.CONFIRM,),
    "rate_limit": (Tier.AUTO, Tier.NOTIFY),
}


def _forbid(reader: Reader, found: dict[str, tuple[Node, Node]], tier: Tier, label: str) -> None:
    for key, tiers in _ONLY.items():
        if key in found and tier not in tiers:
            allowed = "/".join(t.value for t in tiers)
            reader.fail(
                found[key][0], f"{label}: `{key}` only applies to {allowed} rules, not {tier.value}"
            )
