"""Showing agent-supplied text in the console so a reviewer reads exactly what was sent.

Autoescaping already keeps HTML out; this module handles what escaping cannot: characters
that are invisible or reorder text (bidi embeddings, overrides and isolates, zero-width
characters, the BOM, tag characters, C0/C1 controls), which could make ``acct-999`` look like
``acct-123`` (SPEC §1.2, as the Slack and Teams cards do). Every template expression passes
through ``finalize``: such characters become visible ``⟦U+XXXX⟧`` markers. JSON shown with
``pretty`` writes them as ``\\uXXXX`` escapes instead, so the text stays JSON for the same
value and its SHA-256 can be recomputed from the page. Line breaks and tabs stay as they are.
Standard library only; nothing here raises.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from markupsafe import Markup

#: general categories never shown as themselves: format, control, private use, surrogate,
#: unassigned, line and paragraph separators
_HIDDEN_CATEGORIES = frozenset({"Cf", "Cc", "Co", "Cs", "Cn", "Zl", "Zp"})
_KEPT = frozenset("\n\t")


def _hidden(ch: str) -> bool:
    return ch not in _KEPT and unicodedata.category(ch) in _HIDDEN_CATEGORIES


def visible(text: str) -> str:
    """``text`` with every hidden or reordering character shown as ``⟦U+XXXX⟧``."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(f"\u27e6U+{ord(ch):04X}\u27e7" if _hidden(ch) else ch for ch in text)


def finalize(value: Any) -> Any:
    """Jinja2 ``finalize``: strings made ``visible``; trusted markup and other values as-is."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value


def pretty_json(value: Any) -> str:
    """Indented JSON of ``value`` (keys in the order given) with hidden characters written as
    ``\\uXXXX`` escapes (astral ones as surrogate pairs, as JSON spells them)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    if text.isascii():
        return text
    return "".join(json.dumps(ch)[1:-1] if _hidden(ch) else ch for ch in text)


__all__ = ["finalize", "pretty_json", "visible"]
