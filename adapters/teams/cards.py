"""The approval card as an Adaptive Card (schema 1.5, Universal Actions) for Microsoft Teams.

Same content as the Slack card (SPEC §1.2, §8): agent and artifact digest, tool and tier,
the exact arguments as pretty JSON with their SHA-256, justification, context, rule and
policy version, deadline, quorum progress, votes, and the final decision. Every agent-supplied
value is a ``TextRun`` (never Markdown-parsed) passed through ``visible``; long values are cut
and say so, keeping the whole activity well under Teams' 28 KB message limit.

When the card has to cut the arguments, its Approve becomes "Review and approve" (verb
``review``): the invoke answers, to the clicker alone, with a review card holding the whole
arguments and an Approve bound to their digest (data ``reviewed``); arguments too long even
for that card get a link to the console page instead (SPEC §8: never approve unseen).

While pending, the card carries ``Action.Execute`` Approve (verb ``approve``) and a Deny
sub-card with a required reason (verb ``deny``), both with data ``{"request_id": …}``, plus a
``refresh`` action (verb ``refresh``) so Teams re-fetches the current card for approvers.
Pure functions of domain values; no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from adapters.teams.text import cut, json_visible, visible
from bot.domain import Request, Status, Tier, Verdict, Vote
from bot.policy.people import display

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
ERROR_CONTENT_TYPE = "application/vnd.microsoft.error"
SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
VERSION = "1.5"

APPROVE_VERB = "approve"
DENY_VERB = "deny"
REFRESH_VERB = "refresh"
REVIEW_VERB = "review"
REVIEWED = "reviewed"
EDITED_INPUT = "edited"
#: the whole arguments on a review card, kept under Teams' 28 KB message limit
REVIEW_LIMIT = 20_000
REASON_INPUT = "reason"

ARGUMENTS_LIMIT = 6000
CONTEXT_LIMIT = 2500
JUSTIFICATION_LIMIT = 2000
FIELD_LIMIT = 300
REASON_LIMIT = 1000
VOTE_REASON_LIMIT = 300
NAME_LIMIT = 100
NOTE_LIMIT = 500
#: Teams refreshes automatically for at most 60 listed users
REFRESH_USERS_LIMIT = 60

_HEADLINES = {
    Status.PENDING: "Approval needed",
    Status.APPROVED: "Approved",
    Status.DENIED: "Denied",
    Status.EXPIRED: "Expired: denied for want of a decision",
    Status.CANCELLED: "Cancelled by the agent",
}
_STYLES = {
    Status.PENDING: "warning",
    Status.APPROVED: "good",
    Status.DENIED: "attention",
    Status.EXPIRED: "attention",
    Status.CANCELLED: "emphasis",
}


def when(dt: datetime | None) -> str:
    """A timestamp as humans read it on the card (UTC, seconds)."""
    if dt is None:
        return "none"
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _run(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextRun", "text": text, **style}


def _rich(*inlines: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": list(inlines), **extra}


def _label(text: str, **extra: Any) -> dict[str, Any]:
    # Labels are our own constant text, so a plain TextBlock is safe here.
    return {"type": "TextBlock", "text": text, "weight": "Bolder", "wrap": True, **extra}


def _fact(label: str, value: str, limit: int = FIELD_LIMIT, **style: Any) -> dict[str, Any]:
    shown, was_cut = cut(visible(value), limit)
    return _rich(
        _run(f"{label}: ", weight="Bolder"),
        _run(shown + (" [cut]" if was_cut else ""), **style),
        spacing="None",
    )


def _block(label: str, text: str, limit: int, *, monospace: bool) -> list[dict[str, Any]]:
    shown, was_cut = cut(text, limit)
    style: dict[str, Any] = {"fontType": "Monospace"} if monospace else {}
    out = [_label(label, spacing="Medium"), _rich(_run(shown, **style))]
    if was_cut:
        out.append(
            {
                "type": "TextBlock",
                "text": f"Cut: showing the first {limit:,} of {len(text):,} characters.",
                "isSubtle": True,
                "wrap": True,
                "spacing": "None",
            }
        )
    return out


def approvals(request: Request, votes: Sequence[Vote]) -> tuple[int, int]:
    """(received, required): distinct humans who approved, and how many are needed."""
    received = len({v.approver.key for v in votes if v.verdict is Verdict.APPROVE})
    return received, max(request.requirement.required, 1)


def _vote_line(vote: Vote) -> dict[str, Any]:
    verb = "Approved" if vote.verdict is Verdict.APPROVE else "Denied"
    who = display(vote.approver)
    inlines = [
        _run(f"{verb} by ", weight="Bolder"),
        _run(cut(visible(who), NAME_LIMIT)[0], weight="Bolder"),
        _run(f" ({vote.approver.platform.value}, group "),
        _run(cut(visible(vote.group), NAME_LIMIT)[0]),
        _run(f") at {when(vote.at)}"),
    ]
    if vote.reason:
        inlines.append(_run(": "))
        inlines.append(_run(cut(visible(vote.reason), VOTE_REASON_LIMIT)[0], italic=True))
    return _rich(*inlines, spacing="Small")


def _outcome(request: Request) -> list[dict[str, Any]]:
    if not request.status.final:
        return []
    inlines = [_run(f"{request.status.value.capitalize()} at {when(request.decided_at)}")]
    if request.reason:
        inlines += [_run(": "), _run(cut(visible(request.reason), REASON_LIMIT)[0])]
    if request.last_log_index is not None:
        inlines.append(_run(f" (attestation log index {request.last_log_index})", isSubtle=True))
    return [_label("Decision", spacing="Medium"), _rich(*inlines)]


def _approve_action(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "Action.Execute",
        "title": "Approve",
        "verb": APPROVE_VERB,
        "data": data,
        "style": "positive",
        "associatedInputs": "none",
    }


def arguments_cut(request: Request) -> bool:
    """Whether the card cannot approve: it shows the arguments cut, or an approver edited
    them (the review card's Approve binds the digest it showed; a card click does not)."""
    return (
        request.edit is not None
        or cut(json_visible(dict(request.current_arguments)), ARGUMENTS_LIMIT)[1]
    )


def _actions(request: Request, console_url: str = "") -> list[dict[str, Any]]:
    data = {"request_id": request.id}
    approve = _approve_action(data)
    edit: list[dict[str, Any]] = []
    if request.step_up is not None and console_url:
        # SPEC §5 step_up: only the approver's security key, in the console, approves.
        approve = {
            "type": "Action.OpenUrl",
            "title": "Approve in the console (security key)",
            "url": f"{console_url.rstrip('/')}/console/requests/{request.id}",
        }
    elif arguments_cut(request):
        approve = {**approve, "title": "Review and approve", "verb": REVIEW_VERB}
    elif request.editable:
        # Rule option editable: the review card holds the JSON editor.
        edit = [{**approve, "title": "Edit and approve", "verb": REVIEW_VERB, "style": "default"}]
    return [
        approve,
        *edit,
        {
            "type": "Action.ShowCard",
            "title": "Deny…",
            "card": {
                "type": "AdaptiveCard",
                "body": [
                    {
                        "type": "Input.Text",
                        "id": REASON_INPUT,
                        "label": "Why are you denying this call?",
                        "isMultiline": True,
                        "isRequired": True,
                        "maxLength": REASON_LIMIT,
                        "errorMessage": "A reason is required to deny.",
                    }
                ],
                "actions": [
                    {
                        "type": "Action.Execute",
                        "title": "Deny",
                        "verb": DENY_VERB,
                        "data": data,
                        "style": "destructive",
                    }
                ],
            },
        },
    ]


def approval_card(
    request: Request,
    votes: Sequence[Vote] = (),
    *,
    note: str | None = None,
    refresh_users: Sequence[str] = (),
    console_url: str = "",
) -> dict[str, Any]:
    """The card for ``request`` in its current state.

    ``note`` is a message for the one user an invoke response goes to (a refusal, say);
    ``refresh_users`` are Teams user MRIs for automatic refresh while pending.
    """
    pending = request.status is Status.PENDING
    confirm = request.tier is Tier.CONFIRM
    headline = _HEADLINES[request.status]
    if request.tier is Tier.NOTIFY:
        headline = "For your information: allowed by policy"
    received, required = approvals(request, votes)
    artifact = request.artifact_digest or "none declared"
    groups = ", ".join(request.approver_groups) or "none"
    body: list[dict[str, Any]] = [
        {
            "type": "Container",
            "style": _STYLES[request.status] if confirm else "emphasis",
            "bleed": True,
            "items": [
                {
                    "type": "TextBlock",
                    "text": headline,
                    "size": "Large",
                    "weight": "Bolder",
                    "wrap": True,
                },
                _rich(
                    _run(
                        cut(visible(request.call.tool), FIELD_LIMIT)[0],
                        fontType="Monospace",
                        size="Medium",
                        weight="Bolder",
                    ),
                    _run(f"  risk tier: {request.tier.value}"),
                ),
            ],
        },
        _fact("Agent", request.agent_id),
        _fact("Artifact digest", artifact, fontType="Monospace"),
        *(
            [_fact("Claimed artifact (unverified)", claimed, fontType="Monospace")]
            if (claimed := request.claimed_artifact_digest) is not None
            else []
        ),
        _fact("Rule", request.policy.rule or "none (default for unknown tools)"),
        _fact("Policy version", request.policy.version or "unversioned"),
        _fact("Policy digest", request.policy.digest, fontType="Monospace"),
        _fact("Deadline", when(request.deadline)),
        _fact("Approvals", f"{received} of {required} (groups: {groups})"),
        _fact("Request", request.id, fontType="Monospace"),
        *_block(
            "Arguments (exact JSON)",
            json_visible(dict(request.current_arguments)),
            ARGUMENTS_LIMIT,
            monospace=True,
        ),
        _fact("SHA-256 of the arguments (RFC 8785)", request.current_sha256, fontType="Monospace"),
        *_block(
            "Justification",
            visible(request.call.justification or "(none given)"),
            JUSTIFICATION_LIMIT,
            monospace=False,
        ),
        *_block(
            "Context",
            json_visible(dict(request.call.context)) if request.call.context else "(none)",
            CONTEXT_LIMIT,
            monospace=True,
        ),
    ]
    if votes:
        body.append(_label("Votes", spacing="Medium"))
        body.extend(_vote_line(v) for v in votes)
    body.extend(_outcome(request))
    if note:
        body.append(
            _rich(
                _run(cut(visible(note), NOTE_LIMIT)[0], color="Attention", weight="Bolder"),
                spacing="Medium",
            )
        )
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": SCHEMA,
        "version": VERSION,
        "msteams": {"width": "Full"},
        "fallbackText": f"signoff: {headline} (request {request.id})",
        "body": body,
    }
    if pending and confirm:
        card["actions"] = _actions(request, console_url)
        card["refresh"] = {
            "action": {
                "type": "Action.Execute",
                "title": "Refresh",
                "verb": REFRESH_VERB,
                "data": {"request_id": request.id},
            },
            "userIds": list(refresh_users[:REFRESH_USERS_LIMIT]),
        }
    return card


def review_card(request: Request, console_url: str) -> dict[str, Any]:
    """The whole arguments of ``request`` with an Approve bound to their digest, or, when
    they do not fit a Teams card, a link to review and approve them in the console."""
    text = json_visible(dict(request.current_arguments))
    link = f"{console_url.rstrip('/')}/console/requests/{request.id}"
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": "Review the whole arguments",
            "size": "Large",
            "weight": "Bolder",
            "wrap": True,
        },
        _fact("Tool", request.call.tool, fontType="Monospace"),
        _fact("Agent", request.agent_id),
        _fact("Request", request.id, fontType="Monospace"),
        _fact("SHA-256 of the arguments (RFC 8785)", request.current_sha256, fontType="Monospace"),
    ]
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": SCHEMA,
        "version": VERSION,
        "msteams": {"width": "Full"},
        "fallbackText": f"signoff: review request {request.id}",
        "body": body,
    }
    if len(text) > REVIEW_LIMIT:
        body.append(
            _label(
                "These arguments are too long for Teams: review and approve them in the console."
            )
        )
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in the console", "url": link}]
        return card
    body += [
        _label("Arguments (exact JSON)", spacing="Medium"),
        _rich(_run(text, fontType="Monospace")),
    ]
    approve = _approve_action({"request_id": request.id, REVIEWED: request.current_sha256})
    if request.editable:
        # Rule option editable: the JSON editor's text comes back with the Approve.
        body.append(
            {
                "type": "Input.Text",
                "id": EDITED_INPUT,
                "label": "Edit before approving (JSON; the tool cannot change)",
                "isMultiline": True,
                "value": json.dumps(dict(request.current_arguments), indent=2, ensure_ascii=False),
                "maxLength": REVIEW_LIMIT,
            }
        )
        approve = {**approve, "associatedInputs": "auto"}
    card["actions"] = [approve]
    return card


def card_response(card: dict[str, Any]) -> dict[str, Any]:
    """An ``adaptiveCard/action`` invoke response body that shows ``card``."""
    return {"statusCode": 200, "type": CARD_CONTENT_TYPE, "value": card}


def error_response(status: int, code: str, message: str) -> dict[str, Any]:
    """An ``adaptiveCard/action`` invoke response body carrying an error message."""
    return {
        "statusCode": status,
        "type": ERROR_CONTENT_TYPE,
        "value": {"code": code, "message": message},
    }


__all__ = [
    "APPROVE_VERB",
    "CARD_CONTENT_TYPE",
    "DENY_VERB",
    "EDITED_INPUT",
    "REASON_INPUT",
    "REFRESH_VERB",
    "REVIEWED",
    "REVIEW_VERB",
    "approval_card",
    "approvals",
    "arguments_cut",
    "card_response",
    "error_response",
    "review_card",
    "when",
]
