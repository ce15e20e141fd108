"""Agent request bodies are read by ``decode_json`` (orjson when it cannot differ) exactly as
the standard library's strict decoder reads them: same values, same refusals (duplicate
keys, NaN/Infinity, bad UTF-8)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.jsontext import _DECODER, decode_json

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
KEYS = st.sampled_from(["a", "b", "é", 'q"', "n\\", "1"])


def _text(value: Any) -> str:
    """JSON text of ``value``; a list of pairs tagged "obj" becomes an object that may
    repeat a key."""
    if isinstance(value, tuple) and value and value[0] == "obj":
        return "{" + ", ".join(f"{json.dumps(k)}: {_text(v)}" for k, v in value[1]) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_text(v) for v in value) + "]"
    return json.dumps(value)


DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(st.just("obj"), st.lists(st.tuples(KEYS, inner), max_size=4)),
    ),
    max_leaves=12,
)


def _stdlib(raw: bytes) -> Any:
    try:
        return ("ok", _DECODER.decode(raw.decode("utf-8")))
    except (ValueError, RecursionError) as exc:
        return ("error", type(exc).__name__, str(exc))


def _ours(raw: bytes) -> Any:
    try:
        return ("ok", decode_json(raw))
    except (ValueError, RecursionError) as exc:
        return ("error", type(exc).__name__, str(exc))


@given(DOCUMENTS)
def test_decoded_exactly_as_the_strict_stdlib_decoder(doc: Any) -> None:
    raw = _text(doc).encode()
    assert repr(_ours(raw)) == repr(_stdlib(raw))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1, "a": 2}',
        b'{"a": "x", "a": "x"}',
        b'{"t": "crm.read", "arguments": {"x": [{"b": 1, "b": 2}]}}',
        b'{"a\\u0062": 1, "ab": 2}',  # the same key, spelt with an escape
        b'{"a": NaN}',
        b'{"a": -Infinity}',
        b'{"a": 1e400}',
        b'{"a": 18446744073709551616}',
        b'{"a": -9223372036854775809}',
        b'\xef\xbb\xbf{"a": 1}',
        b'{"a": "\xed\xa0\x80"}',
        b'{"a": "\\ud800"}',
        b"[" * 300 + b"]" * 300,
        b'{"a": 1',
    ],
)
def test_edge_cases_match_the_strict_stdlib_decoder(raw: bytes) -> None:
    assert repr(_ours(raw)) == repr(_stdlib(raw))


def test_a_duplicate_key_is_refused() -> None:
    with pytest.raises(ValueError, match="duplicate object key 'amount'"):
        decode_json(b'{"amount": 1, "amount": 25000}')
