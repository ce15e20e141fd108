"""Slack modals: the full arguments of a request, and the deny dialog asking for a reason.

Both are ``slack_sdk.models.views.View`` values opened with ``views.open``. The full
arguments are split across section blocks within the limits (3000 characters per section,
100 blocks per modal). The deny modal carries the request id (and the channel the click came
from, for refusals) in ``private_metadata``; its reason input is required. Pure functions;
``from_metadata`` raises ``ValueError`` on metadata signoff did not write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from adapters.slack.text import chunks, escape, inline_code, pretty_json
from bot.domain import Request

VIEW_DENY = "signoff_deny_reason"
VIEW_ARGUMENTS = "signoff_arguments"
VIEW_REVIEW = "signoff_review"
EDIT_BLOCK = "edited"
EDIT_ACTION = "edited"
#: Slack's plain_text_input holds at most 3000 characters; longer arguments edit in the console
EDIT_MAX = 3000
REASON_BLOCK = "reason"
REASON_ACTION = "reason"
REASON_MAX = 2000
MODAL_BLOCKS = 100
_CHUNK = 2990  # one section: ``` fences + newlines + chunk <= 3000


@dataclass(frozen=True, slots=True)
class DenyOrigin:
    """What the deny modal remembers: the request and where the click happened."""

    request_id: str
    channel: str | None = None

    def to_metadata(self) -> str:
        return json.dumps({"request": self.request_id, "channel": self.channel})

    @classmethod
    def from_metadata(cls, text: str) -> DenyOrigin:
        """Raises ``ValueError`` when ``text`` is not metadata written by ``to_metadata``."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("request"), str):
            raise ValueError("private_metadata does not name a request")
        channel = data.get("channel")
        return cls(data["request"], channel if isinstance(channel, str) else None)


@dataclass(frozen=True, slots=True)
class ReviewOrigin:
    """What the review modal remembers: the request, the channel of the click and the
    arguments digest the approver was shown (an approval of another version is refused)."""

    request_id: str
    channel: str | None
    arguments_sha256: str

    def to_metadata(self) -> str:
        return json.dumps(
            {"request": self.request_id, "channel": self.channel, "sha": self.arguments_sha256}
        )

    @classmethod
    def from_metadata(cls, text: str) -> ReviewOrigin:
        """Raises ``ValueError`` when ``text`` is not metadata written by ``to_metadata``."""
        base = DenyOrigin.from_metadata(text)
        sha = json.loads(text).get("sha")
        if not isinstance(sha, str):
            raise ValueError("private_metadata does not name the arguments shown")
        return cls(base.request_id, base.channel, sha)


def _code_sections(title: str, text: str, room: int) -> list[Block]:
    blocks, _ = _sections(title, text, room)
    return blocks


def _sections(title: str, text: str, room: int) -> tuple[list[Block], bool]:
    """``text`` as code sections under ``title`` in at most ``room`` blocks; True when it
    did not fit (then the last block says so)."""
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=f"*{title}*"))]
    for piece in chunks(text, _CHUNK - 8):
        blocks.append(SectionBlock(text=MarkdownTextObject(text=f"```\n{piece}\n```")))
    if len(blocks) > room:
        blocks = blocks[: room - 1]
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text="_Too long to show here; the full value is in the request's "
                    "attestation (`signoff audit prove`)._"
                )
            )
        )
        return blocks, True
    return blocks, False


def _head(request: Request) -> ContextBlock:
    return ContextBlock(
        elements=[
            MarkdownTextObject(
                text=f"{inline_code(request.call.tool)} from agent "
                f"{inline_code(request.agent_id)} · arguments SHA-256 "
                f"`{request.current_sha256}` · request `{escape(request.id)}`"
            )
        ]
    )


def arguments_modal(request: Request) -> View:
    """Every argument (and the whole context) of ``request``, exact and escaped."""
    blocks: list[Block] = [_head(request)]
    room = MODAL_BLOCKS - len(blocks)
    args = _code_sections("Arguments", pretty_json(request.current_arguments), room)
    blocks += args
    room = MODAL_BLOCKS - len(blocks)
    if request.call.context and room >= 2:
        blocks += _code_sections("Context", pretty_json(request.call.context), room)
    return View(
        type="modal",
        callback_id=VIEW_ARGUMENTS,
        title=PlainTextObject(text="Tool call arguments"),
        close=PlainTextObject(text="Close"),
        blocks=blocks,
    )


def review_modal(request: Request, channel: str | None, console_url: str) -> View:
    """ "Review and approve": every argument of ``request``, exact and escaped, with Approve
    as the modal's submit button. When even the modal cannot hold them, it has no submit
    and sends the approver to the console page instead (SPEC §8: never approve unseen)."""
    head = _head(request)
    room = MODAL_BLOCKS - 2
    args, too_long = _sections("Arguments", pretty_json(request.current_arguments), room)
    blocks: list[Block] = [head, *args]
    if request.call.context and MODAL_BLOCKS - len(blocks) >= 3:
        blocks += _code_sections(
            "Context", pretty_json(request.call.context), MODAL_BLOCKS - len(blocks) - 1
        )
    link = f"{console_url.rstrip('/')}/console/requests/{request.id}"
    if too_long:
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"These arguments are too long for Slack. Review and approve them in "
                    f"the console: {link}"
                )
            )
        )
        return View(
            type="modal",
            callback_id=VIEW_ARGUMENTS,
            title=PlainTextObject(text="Review tool call"),
            close=PlainTextObject(text="Close"),
            blocks=blocks,
        )
    blocks.append(
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text="Approve records that you were shown these arguments in full, under "
                    "your name, in the signed audit log."
                )
            ]
        )
    )
    if request.editable:
        blocks.append(_editor(request, link))
    return View(
        type="modal",
        callback_id=VIEW_REVIEW,
        private_metadata=ReviewOrigin(request.id, channel, request.current_sha256).to_metadata(),
        title=PlainTextObject(text="Review tool call"),
        submit=PlainTextObject(text="Approve"),
        close=PlainTextObject(text="Cancel"),
        blocks=blocks,
    )


def _editor(request: Request, link: str) -> Block:
    """The arguments as editable JSON (rule option ``editable``), or a pointer to the
    console when they are longer than a Slack input holds."""
    text = json.dumps(dict(request.current_arguments), indent=2, ensure_ascii=False)
    if len(text) > EDIT_MAX:
        return SectionBlock(
            text=MarkdownTextObject(
                text=f"These arguments are too long to edit in Slack; edit them in the console: "
                f"{link}"
            )
        )
    return InputBlock(
        block_id=EDIT_BLOCK,
        label=PlainTextObject(text="Edit before approving (JSON; the tool cannot change)"),
        element=PlainTextInputElement(
            action_id=EDIT_ACTION, multiline=True, initial_value=text, max_length=EDIT_MAX
        ),
        optional=True,
        hint=PlainTextObject(
            text="Change the arguments to approve the call with them instead; the grant binds "
            "what you submit."
        ),
    )


def edited_text(values: dict[str, Any]) -> str | None:
    """The editor's text from a review modal submission (None when it had no editor)."""
    value = ((values.get(EDIT_BLOCK) or {}).get(EDIT_ACTION) or {}).get("value")
    return value if isinstance(value, str) and value.strip() else None


def deny_modal(request: Request, channel: str | None) -> View:
    """The dialog asking why ``request`` is denied; the reason input is required."""
    return View(
        type="modal",
        callback_id=VIEW_DENY,
        private_metadata=DenyOrigin(request.id, channel).to_metadata(),
        title=PlainTextObject(text="Deny tool call"),
        submit=PlainTextObject(text="Deny"),
        close=PlainTextObject(text="Cancel"),
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"You are denying {inline_code(request.call.tool)} from agent "
                    f"{inline_code(request.agent_id)} (arguments SHA-256 "
                    f"`{request.current_sha256[:16]}…`). The agent receives your reason "
                    "and it is recorded in the signed audit log."
                )
            ),
            InputBlock(
                block_id=REASON_BLOCK,
                label=PlainTextObject(text="Reason"),
                element=PlainTextInputElement(
                    action_id=REASON_ACTION,
                    multiline=True,
                    min_length=1,
                    max_length=REASON_MAX,
                    placeholder=PlainTextObject(text="Why must this call not run?"),
                ),
                optional=False,
            ),
        ],
    )
