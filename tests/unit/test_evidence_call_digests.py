"""``call_digests``: both SPEC §7 digests with one canonicalisation, byte-for-byte the same
as ``arguments_sha256`` and ``call_sha256`` (and as RFC 8785 over the spec's call object)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import RequestError
from bot.evidence.canonical import arguments_sha256, call_digests, call_sha256

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.text(),
    st.text(),
    st.text(),
    st.dictionaries(st.text(), json_values, max_size=5),
)
def test_call_digests_equal_the_two_digests(
    request_id: str, agent: str, tool: str, arguments: dict[str, Any]
) -> None:
    try:
        expected_call = rfc8785.dumps(
            {"request_id": request_id, "agent": agent, "tool": tool, "arguments": arguments}
        )
    except rfc8785.CanonicalizationError:
        with pytest.raises(RequestError):
            call_digests(request_id, agent, tool, arguments)
        return
    digests = call_digests(request_id, agent, tool, arguments)
    assert digests == (
        arguments_sha256(arguments),
        call_sha256(request_id, agent, tool, arguments),
    )
    assert digests[1] == hashlib.sha256(expected_call).hexdigest()


def test_call_digests_refuse_what_call_sha256_refuses() -> None:
    with pytest.raises(RequestError):
        call_digests("r", "a", "t", [1])  # type: ignore[arg-type]  # the wrong type on purpose
    with pytest.raises(RequestError):
        call_digests("r", "a", "t", {"x": float("nan")})
    with pytest.raises(RequestError):
        call_digests("r", "a", "t", {"x": 2**53})
    with pytest.raises(RequestError):
        call_digests("r\ud800", "a", "t", {})
