"""Slack text safety: escaping agent-supplied text and fitting it into Block Kit limits.

Slack parses ``<…>`` control sequences (``<!channel>``, ``<@U…>``, ``<http://…|label>``) in
message text; escaping ``&``, ``<`` and ``>`` as entities makes them plain characters
(https://api.slack.com/reference/surfaces/formatting#escaping). Agent text is further shown
inside code blocks, where mrkdwn formatting is not applied; backticks inside are neutralised
so a value can never close the block early. Invisible format characters (bidi overrides, zero
width spaces, tag characters) are made visible so they cannot disguise what an approver reads:
as ``\\uXXXX`` escapes inside JSON (which keeps the JSON exact) and as ``[U+XXXX]`` markers in
free text.

Lengths are counted in UTF-16 code units (what Slack's limits are measured in at worst), so a
cut never overshoots a limit because of emoji. Nothing here raises.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

ELLIPSIS = "…"
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_SPECIAL = re.compile(r"[&<>]")
#: a word joiner after each backtick keeps ``` from ever forming inside a free-text code block
_TICK = "`\u2060"
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")
_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,20}$")
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,20}$")


def units(text: str) -> int:
    """Length in UTF-16 code units (astral characters count twice)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def escape(text: str) -> str:
    """Escape ``&``, ``<``, ``>`` and mark bidi controls, so Slack shows ``text`` literally
    and never turns it into a mention, a channel ping or a link."""
    if not text.isascii():
        text = "".join(f"[U+{ord(ch):04X}]" if _invisible(ch) else ch for ch in text)
    return _SPECIAL.sub(lambda m: _ENTITIES[m.group()], text)


def _invisible(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cf", "Co", "Cs", "Cn")


def _code_safe(text: str) -> str:
    return escape(text).replace("`", _TICK)


def cut(escaped_units: list[str], limit: int) -> tuple[str, bool]:
    """Join pre-escaped pieces (one per source character) up to ``limit`` UTF-16 units,
    ending in ``…`` when something was left out. Returns (text, was_cut)."""
    total = sum(units(p) for p in escaped_units)
    if total <= limit:
        return "".join(escaped_units), False
    budget = limit - 1
    out: list[str] = []
    used = 0
    for piece in escaped_units:
        size = units(piece)
        if used + size > budget:
            break
        out.append(piece)
        used += size
    return "".join(out) + ELLIPSIS, True


def fit(text: str, limit: int, *, code: bool = False) -> tuple[str, bool]:
    """Escape ``text`` (for a code block when ``code``) and cut it to ``limit`` units without
    splitting an entity or a surrogate pair. Returns (escaped text, was_cut)."""
    convert = _code_safe if code else escape
    whole = convert(text)
    if units(whole) <= limit:
        return whole, False
    return cut([convert(ch) for ch in text], limit)


def code_block(text: str, limit: int) -> tuple[str, bool]:
    """A mrkdwn code block of ``text`` whose whole length is at most ``limit``."""
    body, was_cut = fit(text, limit - 8, code=True)
    return f"```\n{body}\n```", was_cut


def inline_code(text: str, limit: int = 200) -> str:
    """Short agent-supplied values (ids, digests, e-mail addresses) as inline code."""
    if not text:
        return "_none_"
    body, _ = fit(text.replace("\n", " "), limit - 2, code=True)
    return f"`{body}`"


def pretty_json(value: Any) -> str:
    """The exact value as indented JSON: parsing it back yields the same value, so an approver
    can recompute ``arguments_sha256`` from what the card shows. Backticks and invisible
    characters (which can only occur inside JSON strings) are written as ``\\uXXXX``."""
    text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
    if "`" in text or not text.isascii():
        text = "".join(_json_escape(ch) for ch in text)
    return text


def _json_escape(ch: str) -> str:
    if ch == "`" or _invisible(ch):
        code = ord(ch)
        if code > 0xFFFF:
            code -= 0x10000
            return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
        return f"\\u{code:04x}"
    return ch


def chunks(text: str, size: int) -> list[str]:
    """Split escaped code-block text into pieces of at most ``size`` units, on line breaks
    where possible, never inside an entity or a surrogate pair."""
    pieces = [_code_safe(ch) for ch in text]
    out: list[str] = []
    current: list[str] = []
    used = 0
    last_newline = -1
    for piece in pieces:
        n = units(piece)
        if used + n > size:
            if last_newline > 0:
                out.append("".join(current[: last_newline + 1]))
                current = current[last_newline + 1 :]
            else:
                out.append("".join(current))
                current = []
            used = sum(units(p) for p in current)
            last_newline = max((i for i, p in enumerate(current) if p == "\n"), default=-1)
        current.append(piece)
        used += n
        if piece == "\n":
            last_newline = len(current) - 1
    if current:
        out.append("".join(current))
    return out


def mention_user(user_id: str) -> str | None:
    """``<@U…>`` for a well-formed Slack user id, else None (never mention arbitrary text)."""
    return f"<@{user_id}>" if _USER_ID.match(user_id) else None


def mention_group(group_id: str) -> str | None:
    return f"<!subteam^{group_id}>" if _GROUP_ID.match(group_id) else None


def is_channel_id(channel: str) -> bool:
    return bool(_CHANNEL_ID.match(channel))
