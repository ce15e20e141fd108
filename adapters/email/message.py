"""The approval email for one request and one person: HTML and plain text, built from
domain values (no I/O).

Same content as a chat card (SPEC §1.2, §8): agent, artifact digest, tool, the exact arguments
as pretty JSON with their SHA-256, justification, context, rule and policy version, deadline
and quorum. The HTML is rendered by Jinja2 with autoescaping, so agent text can never become
markup; the subject keeps only printable characters (no header injection). Arguments longer
than ``ARGUMENTS_LIMIT`` are cut in the message and its approve link reads "Review and
approve": every link opens a page showing the exact call in full, and only that page's form
decides. Rules with ``step_up`` get a link to the console instead of an approve link.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import jinja2

from bot.domain import Request

ARGUMENTS_LIMIT = 20_000
SUBJECT_LIMIT = 150

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("adapters.email", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True, slots=True)
class Links:
    """Where the message's buttons go: signed decision links, or the console page."""

    approve: str | None
    deny: str | None
    console: str


def printable(text: str, limit: int) -> str:
    """``text`` with control and format characters replaced, cut to ``limit``."""
    clean = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text
    )
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def approval_message(
    request: Request,
    *,
    to: str,
    sender: str,
    links: Links,
    received: int,
    reminder: bool = False,
) -> EmailMessage:
    """The message asking ``to`` to decide ``request``."""
    arguments = pretty(dict(request.current_arguments))
    cut = len(arguments) > ARGUMENTS_LIMIT
    context = {
        "r": request,
        "arguments": arguments[:ARGUMENTS_LIMIT],
        "cut": cut,
        "total": len(arguments),
        "context_json": pretty(dict(request.call.context)) if request.call.context else "",
        "links": links,
        "received": received,
        "required": max(request.requirement.required, 1),
        "reminder": reminder,
        "deadline": request.deadline.strftime("%Y-%m-%d %H:%M UTC") if request.deadline else "",
    }
    message = EmailMessage()
    kind = "Reminder: approval needed" if reminder else "Approval needed"
    message["Subject"] = printable(
        f"[signoff] {kind}: {request.call.tool} from {request.agent_id}", SUBJECT_LIMIT
    )
    message["From"] = sender
    message["To"] = to
    message["X-Signoff-Request"] = request.id
    message.set_content(_TEMPLATES.get_template("message.txt").render(**context))
    message.add_alternative(
        _TEMPLATES.get_template("message.html").render(**context), subtype="html"
    )
    return message
