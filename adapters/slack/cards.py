"""Slack approval cards: the Block Kit message for one request in its current state.

Pure functions of domain values (request, votes, group routes) built with ``slack_sdk``'s
Block Kit models, so they can be golden-tested without a network. Every agent-supplied
string goes through ``adapters.slack.text`` (escaped, cut to the Block Kit limits, shown in
code blocks). Button values carry only the request id (SPEC §8). Nothing here raises for any
input a request can hold.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from adapters.slack.text import (
    ELLIPSIS,
    code_block,
    escape,
    fit,
    inline_code,
    mention_user,
    pretty_json,
)
from bot.domain import Approver, Platform, Request, Status, Tier, Verdict, Vote
from bot.policy.people import display

ACTION_APPROVE = "signoff_approve"
ACTION_DENY = "signoff_deny"
ACTION_VIEW_ARGS = "signoff_view_args"
ACTION_REVIEW = "signoff_review"
ACTION_CONSOLE = "signoff_console"
ACTIONS_BLOCK = "signoff_actions"

#: room left for the arguments code block inside one section (3000) after its heading
ARGUMENTS_BUDGET = 2900
JUSTIFICATION_BUDGET = 1500
PROMPT_BUDGET = 600
#: strings longer than this are cut on the card (the modal shows them whole)
VALUE_PREVIEW = 300
PREVIEW_DEPTH = 5
PREVIEW_ITEMS = 40
PREVIEW_COMPACT = 80

_HEADER = {
    Status.PENDING: ("\N{LOCK}", "Approval needed"),
    Status.APPROVED: ("\N{WHITE HEAVY CHECK MARK}", "Approved"),
    Status.DENIED: ("\N{NO ENTRY}", "Denied"),
    Status.EXPIRED: ("\N{HOURGLASS}", "Expired"),
    Status.CANCELLED: ("\N{LEFTWARDS ARROW WITH HOOK}", "Cancelled"),
}


@dataclass
class Card:
    """A message: fallback ``text`` (notifications, screen readers) and ``blocks``."""

    text: str
    blocks: list[Block]
    truncated: bool
    _dicts: list[dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    def block_dicts(self) -> list[dict[str, Any]]:
        """The blocks as JSON, computed once per card (slack_sdk's serialisation runs its
        Block Kit validation, which is too slow to repeat for every copy of a card)."""
        if self._dicts is None:
            self._dicts = [block.to_dict() for block in self.blocks]
        return self._dicts


def slack_date(at: datetime) -> str:
    """A date Slack renders in each reader's time zone, with a UTC fallback."""
    fallback = at.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def who(approver: Approver) -> str:
    """How a voter is named on a card: a Slack mention for Slack users, else the escaped
    display name and platform."""
    if approver.platform is Platform.SLACK:
        mention = mention_user(approver.user_id)
        if mention is not None:
            return mention
    return f"{escape(display(approver))} ({approver.platform.value})"


def _policy_line(request: Request) -> str:
    digest = request.policy.digest
    short = digest.split(":", 1)[-1][:12]
    version = inline_code(request.policy.version) if request.policy.version else "_unversioned_"
    return f"{version} · `sha256:{short}`"


def _approvers_line(request: Request) -> str:
    req = request.requirement
    parts = []
    if req.groups:
        names = ", ".join(escape(g) for g in req.groups)
        parts.append(f"{req.quorum} of {names}" if req.quorum > 1 else f"any of {names}")
    if req.all_of:
        parts.append("one each from " + ", ".join(escape(g) for g in req.all_of))
    if request.extra_groups:
        parts.append("escalated to " + ", ".join(escape(g) for g in request.extra_groups))
    return "; ".join(parts) or "_nobody_"


def progress_line(request: Request, votes: Sequence[Vote]) -> str:
    """Quorum progress: approvals received/required and who voted how."""
    approvals = len({v.approver.key for v in votes if v.verdict is Verdict.APPROVE})
    required = max(request.requirement.required, 1)
    line = f"*Approvals:* {approvals} of {required}"
    if votes:
        voted = ", ".join(f"{who(v.approver)} {_verb(v.verdict)}" for v in votes)
        line += f" · {voted}"
    return line


def _verb(verdict: Verdict) -> str:
    return "approved" if verdict is Verdict.APPROVE else "denied"


def decision_text(request: Request, votes: Sequence[Vote]) -> str:
    """Who decided, when, why, and the attestation's log index (card section and thread)."""
    label = _HEADER[request.status][1]
    if request.tier is Tier.NOTIFY:
        label = "Allowed and notified"
    at = slack_date(request.decided_at) if request.decided_at else "unknown time"
    deciders: list[Vote] = []
    if request.status is Status.APPROVED:
        deciders = [v for v in votes if v.verdict is Verdict.APPROVE]
    elif request.status is Status.DENIED:
        deciders = [v for v in votes if v.verdict is Verdict.DENY][-1:]
    line = f"*{label}*"
    if deciders:
        line += " by " + ", ".join(who(v.approver) for v in deciders)
    line += f" on {at}"
    if request.reason:
        reason, _ = fit(request.reason, 1000)
        line += f"\n*Reason:* {reason}"
    if request.last_log_index is not None:
        line += f"\n*Attestation:* log index {request.last_log_index}"
    return line


def build_card(request: Request, votes: Sequence[Vote] = (), console_url: str = "") -> Card:
    """The card for ``request`` as it stands (buttons only while a confirm request is pending)."""
    pending = request.status is Status.PENDING
    notify = request.tier is Tier.NOTIFY
    emoji, label = _HEADER[request.status]
    if notify:
        emoji, label = "\N{INFORMATION SOURCE}", "For your information"
    tool = request.call.tool
    header, _ = fit(f"{emoji} {label}: {tool}", 150)
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text=header, emoji=True))]

    fields = [
        f"*Tool*\n{inline_code(tool)}",
        f"*Tier*\n{request.tier.value}",
        f"*Agent*\n{inline_code(request.agent_id)}",
        f"*Artifact*\n{inline_code(request.artifact_digest or '')}",
    ]
    if request.claimed_artifact_digest is not None:
        # what the request said it runs, when that differs from the registered digest
        claimed = inline_code(request.claimed_artifact_digest)
        fields.append(f"*Claimed artifact (unverified)*\n{claimed}")
    fields += [
        f"*Rule*\n{inline_code(request.policy.rule or 'defaults.unknown_tool')}",
        f"*Policy*\n{_policy_line(request)}",
    ]
    if request.deadline is not None and not notify:
        fields.append(f"*Deadline*\n{slack_date(request.deadline)}")
    if not notify:
        fields.append(f"*Approvers*\n{_approvers_line(request)}")
    blocks.append(SectionBlock(fields=[MarkdownTextObject(text=f) for f in fields]))

    arguments, cut = arguments_text(request)
    cut = cut or request.edit is not None
    blocks.append(SectionBlock(text=MarkdownTextObject(text=f"*Arguments*\n{arguments}")))
    note = ""
    if request.edit is not None:
        note = (
            f" · edited by {escape(request.edit.by_name)}; the agent's SHA-256 was "
            f"`{request.arguments_sha256}`"
        )
    elif cut:
        note = " (cut to fit; use *Review and approve*)" if pending else " (cut to fit)"
    blocks.append(
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=f"Arguments SHA-256 `{request.current_sha256}`{note} · "
                    f"request `{escape(request.id)}`"
                )
            ]
        )
    )

    justification = request.call.justification
    if justification:
        text, _ = code_block(justification, JUSTIFICATION_BUDGET)
    else:
        text = "_none given_"
    blocks.append(SectionBlock(text=MarkdownTextObject(text=f"*Justification*\n{text}")))

    context, context_cut = _context_text(request.call.context)
    if context:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=context)))

    if not notify:
        blocks.append(
            ContextBlock(elements=[MarkdownTextObject(text=progress_line(request, votes))])
        )
    if request.status.final:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=decision_text(request, votes))))

    buttons: list[ButtonElement] = []
    if pending and request.tier is Tier.CONFIRM:
        buttons += _decision_buttons(request, cut, console_url)
    if (cut and not (pending and request.tier is Tier.CONFIRM)) or context_cut:
        buttons.append(
            ButtonElement(text="View all arguments", action_id=ACTION_VIEW_ARGS, value=request.id)
        )
    if buttons:
        blocks.append(ActionsBlock(block_id=ACTIONS_BLOCK, elements=buttons))

    fallback = f"{label}: {tool} requested by agent {escape(request.agent_id)}"
    return Card(text=fit(fallback, 300)[0], blocks=blocks, truncated=cut or context_cut)


def arguments_text(request: Request) -> tuple[str, bool]:
    """The arguments code block of the card and whether it had to cut them (then the card
    cannot approve: its approve button becomes "Review and approve", SPEC §8)."""
    shown, values_cut = preview(request.current_arguments)
    text, block_cut = code_block(pretty_json(shown), ARGUMENTS_BUDGET)
    return text, values_cut or block_cut


def arguments_cut(request: Request) -> bool:
    """Whether approving from the card itself is impossible: it shows the arguments cut, or
    an approver edited them (a click carries no digest, so it could approve a stale copy of
    the card; the review modal binds the digest it showed)."""
    return request.edit is not None or arguments_text(request)[1]


def preview(value: Any, limit: int = VALUE_PREVIEW, depth: int = 0) -> tuple[Any, bool]:
    """``value`` shortened for the card so that every top-level key stays visible: long
    strings cut, containers nested deeper than ``PREVIEW_DEPTH`` shown as a cut one-line
    JSON string, long lists and objects cut. Each cut is marked with ``…``; the modal shows
    the exact value. Returns (value, anything_cut)."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value, False
        return f"{value[:limit]}{ELLIPSIS} (+{len(value) - limit} characters)", True
    if isinstance(value, (dict, list)) and depth >= PREVIEW_DEPTH and value:
        compact = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        if len(compact) > PREVIEW_COMPACT:
            return f"{compact[:PREVIEW_COMPACT]}{ELLIPSIS} (nested deeper; view all)", True
        return value, False
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        cut = len(value) > PREVIEW_ITEMS
        for key, item in list(value.items())[:PREVIEW_ITEMS]:
            out[key], item_cut = preview(item, limit, depth + 1)
            cut = cut or item_cut
        if len(value) > PREVIEW_ITEMS:
            out[ELLIPSIS] = f"+{len(value) - PREVIEW_ITEMS} more keys"
        return out, cut
    if isinstance(value, list):
        items = [preview(item, limit, depth + 1) for item in value[:PREVIEW_ITEMS]]
        shown = [v for v, _ in items]
        if len(value) > PREVIEW_ITEMS:
            shown.append(f"{ELLIPSIS} +{len(value) - PREVIEW_ITEMS} more items")
        return shown, len(value) > PREVIEW_ITEMS or any(c for _, c in items)
    return value, False


def _decision_buttons(request: Request, cut: bool, console_url: str) -> list[ButtonElement]:
    deny = ButtonElement(text="Deny", action_id=ACTION_DENY, value=request.id, style="danger")
    if request.step_up is not None:
        # SPEC §5 step_up: only the approver's security key, in the console, approves.
        link = f"{console_url.rstrip('/')}/console/requests/{request.id}"
        console = ButtonElement(
            text="Approve in the console (security key)",
            action_id=ACTION_CONSOLE,
            url=link if console_url else None,
            value=request.id,
            style="primary",
        )
        return [console, deny]
    if cut:
        # The card cannot show everything: approving happens only in the review modal.
        review = ButtonElement(
            text="Review and approve", action_id=ACTION_REVIEW, value=request.id, style="primary"
        )
        return [review, deny]
    sha = request.current_sha256[:16]
    confirm = ConfirmObject(
        title=PlainTextObject(text="Approve this tool call?"),
        text=PlainTextObject(
            text=f"You approve {request.call.tool} exactly as shown (arguments SHA-256 "
            f"{sha}…). Your name is recorded in the signed audit log."[:300]
        ),
        confirm=PlainTextObject(text="Approve"),
        deny=PlainTextObject(text="Cancel"),
    )
    approve = ButtonElement(
        text="Approve",
        action_id=ACTION_APPROVE,
        value=request.id,
        style="primary",
        confirm=confirm,
    )
    if request.editable:
        # Rule option editable: the review modal holds the JSON editor.
        edit = ButtonElement(text="Edit and approve", action_id=ACTION_REVIEW, value=request.id)
        return [approve, edit, deny]
    return [approve, deny]


def _context_text(context: Mapping[str, Any]) -> tuple[str, bool]:
    """The context section (prompt excerpt, requester) and whether anything was left out."""
    if not context:
        return "", False
    left_out = False
    lines = ["*Context*"]
    requested_by = context.get("requested_by")
    if requested_by is not None:
        lines.append(f"Requested by {inline_code(str(requested_by))}")
    session = context.get("session_id")
    if session is not None:
        lines.append(f"Session {inline_code(str(session))}")
    prompt = context.get("prompt")
    if prompt is not None:
        excerpt, left_out = code_block(
            prompt if isinstance(prompt, str) else pretty_json(prompt), PROMPT_BUDGET
        )
        lines.append(f"Prompt excerpt\n{excerpt}")
    others = [k for k in context if k not in ("requested_by", "session_id", "prompt")]
    if others:
        names = ", ".join(inline_code(k, 60) for k in others[:10])
        more = f" and {len(others) - 10} more" if len(others) > 10 else ""
        lines.append(f"Other fields: {names}{more} (see *View all arguments*)")
        left_out = True
    return "\n".join(lines), left_out
