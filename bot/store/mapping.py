"""Explicit translators between domain values and table rows.

``from_x(value) -> dict`` gives the column values for a domain value ``x``;
``to_x(row) -> X`` rebuilds the domain value from a result row. Nothing else in signoff
sees rows. Times go in as aware UTC and come back as aware UTC (SQLite keeps no zone, so
naive values read back are UTC by construction). Nested domain values (policy reference,
requirement, escalation ladder, extra groups) are stored as JSON.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from bot.domain import (
    Agent,
    Approver,
    Checkpoint,
    Edit,
    EscalationStep,
    Event,
    LogEntry,
    Outcome,
    Platform,
    PolicyRef,
    Post,
    Request,
    Requirement,
    Status,
    Tier,
    ToolCall,
    Verdict,
    Vote,
    utc,
)

_MICROSECOND = timedelta(microseconds=1)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


def from_agent(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.id,
        "token_hash": agent.token_hash,
        "artifact_digest": agent.artifact_digest,
        "labels": dict(agent.labels),
        "suspended": agent.suspended,
        "created_at": utc(agent.created_at),
    }


def to_agent(row: Any) -> Agent:
    return Agent(
        id=row.id,
        token_hash=row.token_hash,
        created_at=utc(row.created_at),
        artifact_digest=row.artifact_digest,
        labels=dict(row.labels),
        suspended=bool(row.suspended),
    )


def from_policy(policy: PolicyRef) -> dict[str, Any]:
    out = {"digest": policy.digest, "version": policy.version, "rule": policy.rule}
    if policy.signer is not None:
        out["signer"] = policy.signer
    return out


def to_policy(value: dict[str, Any]) -> PolicyRef:
    return PolicyRef(
        digest=value["digest"],
        version=value["version"],
        rule=value["rule"],
        signer=value.get("signer"),
    )


def from_requirement(requirement: Requirement) -> dict[str, Any]:
    return {
        "groups": list(requirement.groups),
        "quorum": requirement.quorum,
        "all_of": list(requirement.all_of),
    }


def to_requirement(value: dict[str, Any]) -> Requirement:
    return Requirement(
        groups=tuple(value["groups"]), quorum=value["quorum"], all_of=tuple(value["all_of"])
    )


def from_step(step: EscalationStep) -> dict[str, Any]:
    # whole microseconds, so the timedelta round-trips exactly
    return {
        "after_us": step.after // _MICROSECOND,
        "remind": step.remind,
        "to": step.to,
        "page": step.page,
        "deny": step.deny,
    }


def to_step(value: dict[str, Any]) -> EscalationStep:
    return EscalationStep(
        after=timedelta(microseconds=value["after_us"]),
        remind=value["remind"],
        to=value["to"],
        page=value["page"],
        deny=value["deny"],
    )


def from_request(request: Request) -> dict[str, Any]:
    """Every column of ``requests`` (including ``id``) for ``request``."""
    call = request.call
    return {
        "id": request.id,
        "agent_id": request.agent_id,
        "tool": call.tool,
        "arguments": dict(call.arguments),
        "justification": call.justification,
        "context": dict(call.context),
        "tier": str(request.tier),
        "status": str(request.status),
        "policy": from_policy(request.policy),
        "requirement": from_requirement(request.requirement),
        "created_at": utc(request.created_at),
        "arguments_sha256": request.arguments_sha256,
        "call_sha256": request.call_sha256,
        "artifact_digest": request.artifact_digest,
        "claimed_artifact_digest": request.claimed_artifact_digest,
        "escalation": [from_step(step) for step in request.escalation],
        "deadline": _utc_or_none(request.deadline),
        "decided_at": _utc_or_none(request.decided_at),
        "reason": request.reason,
        "callback_url": request.callback_url,
        "idempotency_key": request.idempotency_key,
        "body_sha256": request.body_sha256,
        "extra_groups": list(request.extra_groups),
        "steps_done": request.steps_done,
        "grant": request.grant,
        "grant_expires_at": _utc_or_none(request.grant_expires_at),
        "grant_used_at": _utc_or_none(request.grant_used_at),
        "outcome": None if request.outcome is None else str(request.outcome),
        "last_log_index": request.last_log_index,
        "version": request.version,
        "session_key": request.session,
        "labels": ",".join(request.labels),
        "options": from_options(request),
        "edit": from_edit(request.edit),
    }


def from_options(request: Request) -> dict[str, Any] | None:
    if not request.editable and request.step_up is None:
        return None
    return {"editable": request.editable, "step_up": request.step_up}


def from_edit(edit: Edit | None) -> dict[str, Any] | None:
    if edit is None:
        return None
    return {
        "arguments": dict(edit.arguments),
        "arguments_sha256": edit.arguments_sha256,
        "call_sha256": edit.call_sha256,
        "by": edit.by,
        "by_name": edit.by_name,
        "at": utc(edit.at).isoformat(),
    }


def to_edit(value: dict[str, Any] | None) -> Edit | None:
    if value is None:
        return None
    return Edit(
        arguments=value["arguments"],
        arguments_sha256=value["arguments_sha256"],
        call_sha256=value["call_sha256"],
        by=value["by"],
        by_name=value["by_name"],
        at=utc(datetime.fromisoformat(value["at"])),
    )


def to_request(row: Any) -> Request:
    return Request(
        id=row.id,
        agent_id=row.agent_id,
        call=ToolCall(
            tool=row.tool,
            arguments=row.arguments,
            justification=row.justification,
            context=row.context,
        ),
        tier=Tier(row.tier),
        status=Status(row.status),
        policy=to_policy(row.policy),
        requirement=to_requirement(row.requirement),
        created_at=utc(row.created_at),
        arguments_sha256=row.arguments_sha256,
        call_sha256=row.call_sha256,
        artifact_digest=row.artifact_digest,
        claimed_artifact_digest=row.claimed_artifact_digest,
        escalation=tuple(to_step(step) for step in row.escalation),
        deadline=_utc_or_none(row.deadline),
        decided_at=_utc_or_none(row.decided_at),
        reason=row.reason,
        callback_url=row.callback_url,
        idempotency_key=row.idempotency_key,
        body_sha256=row.body_sha256,
        extra_groups=tuple(row.extra_groups),
        steps_done=row.steps_done,
        grant=row.grant,
        grant_expires_at=_utc_or_none(row.grant_expires_at),
        grant_used_at=_utc_or_none(row.grant_used_at),
        outcome=None if row.outcome is None else Outcome(row.outcome),
        last_log_index=row.last_log_index,
        version=row.version,
        session=row.session_key,
        labels=tuple(row.labels.split(",")) if row.labels else (),
        editable=bool((row.options or {}).get("editable", False)),
        step_up=(row.options or {}).get("step_up"),
        edit=to_edit(row.edit),
    )


def from_vote(vote: Vote) -> dict[str, Any]:
    approver = vote.approver
    return {
        "request_id": vote.request_id,
        "approver_key": approver.key,
        "platform": approver.platform.value,
        "tenant": approver.tenant,
        "user_id": approver.user_id,
        "display_name": approver.display_name,
        "email": approver.email,
        "via": approver.via,
        "verdict": vote.verdict.value,
        "group": vote.group,
        "reason": vote.reason,
        "at": utc(vote.at),
        "arguments_sha256": vote.arguments_sha256 or "",
    }


def to_vote(row: Any) -> Vote:
    approver = Approver(
        platform=Platform(row.platform),
        tenant=row.tenant,
        user_id=row.user_id,
        display_name=row.display_name,
        email=row.email,
        via=row.via,
    )
    # ``approver_key`` holds the person the vote counted for (``Approver.key``); votes
    # recorded before people existed hold the account there.
    if row.approver_key != approver.account:
        approver = replace(approver, person=row.approver_key)
    return Vote(
        request_id=row.request_id,
        approver=approver,
        verdict=Verdict(row.verdict),
        group=row.group,
        reason=row.reason,
        at=utc(row.at),
        arguments_sha256=row.arguments_sha256 or None,
    )


def from_post(post: Post) -> dict[str, Any]:
    return {
        "request_id": post.request_id,
        "platform": post.platform.value,
        "group": post.group,
        "channel": post.channel,
        "message_id": post.message_id,
        "thread_id": post.thread_id,
        "extra": dict(post.extra),
    }


def to_post(row: Any) -> Post:
    return Post(
        request_id=row.request_id,
        platform=Platform(row.platform),
        group=row.group,
        channel=row.channel,
        message_id=row.message_id,
        thread_id=row.thread_id,
        extra=dict(row.extra),
    )


def to_log_entry(row: Any) -> LogEntry:
    return LogEntry(
        index=row.idx,
        request_id=row.request_id,
        envelope=bytes(row.envelope),
        leaf_hash=bytes(row.leaf_hash),
        event=Event(row.event),
        created_at=utc(row.created_at),
    )


def from_checkpoint(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "size": checkpoint.size,
        "root": checkpoint.root,
        "note": checkpoint.note,
        "created_at": utc(checkpoint.created_at),
    }


def to_checkpoint(row: Any) -> Checkpoint:
    return Checkpoint(
        size=row.size,
        root=bytes(row.root),
        note=row.note,
        created_at=utc(row.created_at),
    )
