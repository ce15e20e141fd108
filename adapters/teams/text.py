"""Making agent-supplied text safe to show in Microsoft Teams.

Cards show agent text only in ``TextRun``s, which Adaptive Cards never parse as Markdown, so
the card shows exactly what the agent sent; message text (thread replies) is Markdown in
Teams, so it is escaped with ``escape_markdown``. Both pass through ``visible`` first, which
turns characters that could hide or reorder what a human reads (bidi controls, zero-width
characters, C0/C1 controls) into visible code points (SPEC §1.2: the human sees the exact
action). Standard library only.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Bidi embeddings/overrides/isolates, marks, zero-width characters, separators, BOM, the
# C1 block and DEL: invisible or reordering, so a reviewer could be shown something else.
_HIDDEN = re.compile(
    "[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f"
    "\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]"
)
# CommonMark treats a backslash before any of these as the literal character; Teams'
# Markdown subset honours it. ``&``, ``<`` and ``>`` become entities so nothing can open an
# HTML tag (``<at>`` mentions) or a block quote.
_LOG_UNSAFE = re.compile("[\\\\\t\n\r]|" + _HIDDEN.pattern)
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!~|])")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def visible(text: str) -> str:
    """``text`` with every hidden or reordering character shown as ``⟦U+XXXX⟧``."""
    return _HIDDEN.sub(lambda m: f"\u27e6U+{ord(m.group(0)):04X}\u27e7", text)


def for_log(text: str | None, limit: int = 200) -> str:
    """Sender-supplied ``text`` (ids, names, URLs from an activity) fit for one log line:
    line breaks, tabs, controls and hidden characters written as ``\\uXXXX``, cut to
    ``limit`` characters, so a crafted field can never forge or hide a log line."""
    if not text:
        return "?"
    shown = _LOG_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text[:limit])
    return shown + ("…" if len(text) > limit else "")


def json_visible(value: Any) -> str:
    """Pretty JSON of ``value`` (keys in the order given) whose hidden characters are written
    as ``\\uXXXX`` escapes: still valid JSON for the same value, so the SHA-256 shown next to
    it can be recomputed from what the card shows."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return _HIDDEN.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def escape_markdown(text: str) -> str:
    """``text`` for a Teams Markdown message: entities for ``& < >``, a backslash before
    every other Markdown-significant character, hidden characters made visible."""
    shown = visible(text)
    shown = "".join(_ENTITIES.get(ch, ch) for ch in shown)
    return _MARKDOWN.sub(r"\\\1", shown)


def cut(text: str, limit: int) -> tuple[str, bool]:
    """The first ``limit`` characters of ``text`` and whether anything was left out."""
    if len(text) <= limit:
        return text, False
    return text[:limit], True


__all__ = ["cut", "escape_markdown", "json_visible", "visible"]
