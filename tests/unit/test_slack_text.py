"""Escaping and fitting of agent-supplied text for Slack (adapters.slack.text)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.slack.text import (
    chunks,
    code_block,
    escape,
    fit,
    inline_code,
    mention_group,
    mention_user,
    pretty_json,
    units,
)


@pytest.mark.parametrize(
    "hostile",
    [
        "<!channel>",
        "<!here>",
        "<!everyone>",
        "<@U0ALICE>",
        "<#C0GENERAL>",
        "<http://evil.example|your bank>",
        "<!subteam^S0FIN>",
        "<!date^1^{date}|x>",
    ],
)
def test_escape_leaves_no_control_sequence(hostile: str) -> None:
    out = escape(f"hi {hostile} & bye")
    assert "<" not in out and ">" not in out
    assert (
        out
        == "hi "
        + hostile.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        + " &amp; bye"
    )


def test_escape_marks_invisible_direction_overrides() -> None:
    assert escape("pay \u202eevil\u202c now") == "pay [U+202E]evil[U+202C] now"
    assert escape("שלום مرحبا 💸") == "שלום مرحبا 💸"  # visible RTL text and emoji stay


def test_pretty_json_is_exact_and_cannot_close_a_code_block() -> None:
    value = {
        "cmd": "echo ```oops``` `x`",
        "dir": "\u202etxt.exe",
        "tag": "a\U000e0041b",
        "emoji": "🔥",
        "n": [1, 2.5, None, True],
    }
    text = pretty_json(value)
    assert json.loads(text) == value
    assert "`" not in text and "\u202e" not in text and "\U000e0041" not in text
    assert "🔥" in text


def test_code_block_fits_and_marks_a_cut() -> None:
    block, cut = code_block("&" * 5000, 3000)
    assert cut and units(block) <= 3000
    assert block.startswith("```\n") and block.endswith("…\n```")
    assert "&amp;&amp;" in block and "&am…" not in block  # never split inside an entity


def test_fit_counts_astral_characters_twice() -> None:
    text, cut = fit("😀" * 10, 9)
    assert cut and text == "😀😀😀😀…" and units(text) == 9
    assert fit("short", 10) == ("short", False)


def test_free_text_backticks_cannot_close_the_block() -> None:
    block, _ = code_block("a```b", 100)
    assert block.count("```") == 2


def test_inline_code_is_escaped_and_single_line() -> None:
    assert inline_code("<@U1>\n`x`") == "`&lt;@U1&gt; `\u2060x`\u2060`"
    assert inline_code("") == "_none_"


def test_mentions_are_only_built_from_well_formed_ids() -> None:
    assert mention_user("U0ALICE") == "<@U0ALICE>"
    assert mention_user("U1>|<!channel") is None
    assert mention_group("S0FIN") == "<!subteam^S0FIN>"
    assert mention_group("S0|<!here>") is None


@given(st.text(max_size=400), st.integers(min_value=20, max_value=300))
def test_chunks_rejoin_to_the_escaped_text(text: str, size: int) -> None:
    pieces = chunks(text, size)
    assert all(units(p) <= size for p in pieces)
    assert "".join(pieces) == "".join(code_block(ch, 10_000)[0][4:-4] for ch in text)


@given(st.text(max_size=300), st.integers(min_value=10, max_value=200))
def test_fit_never_exceeds_the_limit(text: str, limit: int) -> None:
    out, cut = fit(text, limit)
    assert units(out) <= limit
    assert cut == (units(escape(text)) > limit)
    assert "<" not in out and ">" not in out
