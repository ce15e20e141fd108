"""RFC 8785 canonical JSON and the SPEC §7 digests."""

from __future__ import annotations

import hashlib
import json
from types import MappingProxyType
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import RequestError
from bot.evidence.canonical import (
    arguments_sha256,
    call_sha256,
    canonical,
    canonical_plain,
    is_plain,
    sha256_hex,
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


def test_rfc8785_key_order_and_number_forms() -> None:
    # RFC 8785 §3.2.3 sorts by UTF-16 code units: U+FF01 sorts after U+1F600 (0xD83D...).
    value: dict[str, Any] = {
        "b": [1, 1.0, 1e21, 1e-7, -0.0],
        "a": "x\u2028\n",
        "\uff01": 1,
        "\U0001f600": 2,
    }
    out = canonical(value)
    assert out == rfc8785.dumps(value)
    assert out.startswith(b'{"a":"x\xe2\x80\xa8\\n","b":[1,1,1e+21,1e-7,0]')
    assert out.index("\U0001f600".encode()) < out.index("\uff01".encode())


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_fast_path_equals_rfc8785(value: Any) -> None:
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        with pytest.raises(RequestError):
            canonical(value)
        return
    assert canonical(value) == expected


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(st.characters(codec="ascii")), json_values, max_size=6))
def test_fast_path_with_ascii_keys_equals_rfc8785(value: dict[str, Any]) -> None:
    assert canonical(value) == rfc8785.dumps(value)


plain_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.text(st.characters(exclude_categories=["Cs"]))
)
plain_values = st.recursive(
    plain_scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(st.characters(codec="ascii")), inner, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(plain_values)
def test_plain_encoder_equals_rfc8785(value: Any) -> None:
    # canonical_plain (orjson) is what every attestation statement and grant goes through
    assert is_plain(value)
    assert canonical_plain(value) == rfc8785.dumps(value)


def test_plain_encoder_refuses_a_lone_surrogate() -> None:
    with pytest.raises(RequestError, match="lone surrogate"):
        canonical_plain({"a": "x\ud800"})


def test_escapes_control_characters_like_jcs() -> None:
    value = {"s": "".join(chr(i) for i in range(0x20)) + '"\\/\x7f'}
    assert canonical(value) == rfc8785.dumps(value)
    assert b"\\u001f" in canonical(value)


def test_other_mappings_are_accepted() -> None:
    assert canonical(MappingProxyType({"b": 1, "a": (1, 2)})) == b'{"a":[1,2],"b":1}'


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"x": float("nan")}, "not representable"),
        ({"x": float("inf")}, "not representable"),
        ({"x": 2**53}, "exceeds safe integer"),
        ({1: "x"}, "keys must be strings"),
        ({"x": object()}, "unsupported type"),
        ({"x": "\ud800"}, "surrogate"),
    ],
)
def test_non_canonical_values_raise_request_error(value: Any, fragment: str) -> None:
    with pytest.raises(RequestError, match=fragment) as info:
        canonical(value)
    assert "RFC 8785" in info.value.diagnostics()


def test_arguments_sha256_is_sha256_of_canonical_arguments() -> None:
    args = {"to": "acct-123", "amount": 25000, "currency": "USD"}
    expected = hashlib.sha256(b'{"amount":25000,"currency":"USD","to":"acct-123"}').hexdigest()
    assert arguments_sha256(args) == expected
    assert arguments_sha256(dict(reversed(list(args.items())))) == expected


def test_call_sha256_follows_spec_object() -> None:
    args = {"amount": 1}
    body = json.dumps(
        {"agent": "a1", "arguments": args, "request_id": "r1", "tool": "t.x"},
        separators=(",", ":"),
    ).encode()
    assert call_sha256("r1", "a1", "t.x", args) == hashlib.sha256(body).hexdigest()
    assert call_sha256("r2", "a1", "t.x", args) != call_sha256("r1", "a1", "t.x", args)


def test_arguments_must_be_an_object() -> None:
    with pytest.raises(RequestError, match="JSON object"):
        arguments_sha256([1, 2])  # type: ignore[arg-type]  # the wrong type on purpose
    with pytest.raises(RequestError, match="JSON object"):
        call_sha256("r", "a", "t", "x")  # type: ignore[arg-type]  # the wrong type on purpose


def test_sha256_hex() -> None:
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
