"""Canonical JSON (RFC 8785, JCS) and the digests SPEC §7 defines over it.

Owns ``canonical``, ``arguments_sha256`` and ``call_sha256``: the bytes that get hashed and
signed everywhere in signoff. Imports only the standard library, ``orjson``, ``rfc8785``
and ``bot.errors``.

Speed: ``rfc8785.dumps`` is pure Python (~50 µs for an attestation statement). For the
common case -- a tree of dicts with ASCII keys, lists, strings, bools, ``None`` and integers
inside the IEEE-754 safe range, no floats -- RFC 8785 output is byte-for-byte what
``orjson.dumps(value, option=OPT_SORT_KEYS)`` produces (and what ``json.dumps(sort_keys=True,
separators=(",", ":"), ensure_ascii=False)`` produces, several times slower): both escape
exactly ``"``, ``\\`` and U+0000..U+001F (short forms for ``\\b \\t \\n \\f \\r``,
lowercase ``\\u00xx`` otherwise) and write everything else as UTF-8, and code-point order
equals UTF-16 order for ASCII keys. ``canonical`` checks a value qualifies and otherwise
falls back to ``rfc8785`` (floats, non-ASCII keys, other mappings). Hypothesis tests pin
the equivalence.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import orjson
import rfc8785

from bot.errors import RequestError

_INT_MAX = 2**53 - 1
_ENCODE_STR = json.encoder.encode_basestring  # the C encoder's ensure_ascii=False quoting
_DUMPS = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def is_plain(value: Any) -> bool:
    """True when the JSON fast path is guaranteed to equal RFC 8785 for ``value``."""
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return True
    if kind is int:
        return bool(-_INT_MAX <= value <= _INT_MAX)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii() or not is_plain(item):
                return False
        return True
    if kind is list or kind is tuple:
        return all(is_plain(item) for item in value)
    return False


def _to_json_tree(value: Any) -> Any:
    """Turn other mappings/sequences (e.g. ``MappingProxyType``) into dicts/lists."""
    if isinstance(value, Mapping):
        return {key: _to_json_tree(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json_tree(item) for item in value]
    return value


def canonical(value: Any) -> bytes:
    """RFC 8785 canonical JSON of ``value``.

    Raises ``RequestError`` when ``value`` has no canonical form: NaN or infinite floats,
    integers beyond ±(2**53 - 1), non-string object keys, lone surrogates, or values that
    are not JSON at all.
    """
    if is_plain(value):
        return canonical_plain(value)
    try:
        return rfc8785.dumps(_to_json_tree(value))
    except rfc8785.CanonicalizationError as exc:
        raise RequestError(f"value cannot be canonicalised (RFC 8785): {exc}") from exc
    except RecursionError as exc:
        raise RequestError("value cannot be canonicalised (RFC 8785): nested too deeply") from exc


def canonical_plain(value: Any) -> bytes:
    """``canonical`` for a value the caller built from parts known to pass ``is_plain``
    (ASCII literal keys, str/bool/None values, safe ints), skipping the per-node check.
    Attestation statements use it: only their free-form ``detail`` needs checking.

    Raises ``RequestError`` for a lone surrogate in a string.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        pass  # not plain after all: the standard encoder below says what is wrong
    try:
        if type(value) is str:  # what the encoder does for a str, without its set-up
            return _ENCODE_STR(value).encode("utf-8")
        return _DUMPS(value).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RequestError(
            "value cannot be canonicalised (RFC 8785): a string contains a lone surrogate"
        ) from exc
    except (TypeError, ValueError) as exc:
        raise RequestError(f"value cannot be canonicalised (RFC 8785): {exc}") from exc


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def arguments_sha256(arguments: Mapping[str, Any]) -> str:
    """SPEC §7: hex SHA-256 of the canonical JSON of the ``arguments`` object alone.

    Raises ``RequestError`` when ``arguments`` is not an object or has no canonical form.
    """
    if not isinstance(arguments, Mapping):
        raise RequestError("arguments must be a JSON object")
    return sha256_hex(canonical(arguments))


def call_sha256(request_id: str, agent_id: str, tool: str, arguments: Mapping[str, Any]) -> str:
    """SPEC §7: hex SHA-256 of the canonical JSON of
    ``{"request_id", "agent", "tool", "arguments"}``. The attestation subject digest.

    Raises ``RequestError`` when ``arguments`` is not an object or has no canonical form.
    """
    if not isinstance(arguments, Mapping):
        raise RequestError("arguments must be a JSON object")
    return sha256_hex(
        canonical(
            {"request_id": request_id, "agent": agent_id, "tool": tool, "arguments": arguments}
        )
    )


def call_digests(
    request_id: str, agent_id: str, tool: str, arguments: Mapping[str, Any]
) -> tuple[str, str]:
    """``(arguments_sha256(arguments), call_sha256(request_id, agent_id, tool, arguments))``
    canonicalising ``arguments`` once: the call object's canonical form is the arguments'
    canonical bytes spliced between its other members (keys in RFC 8785 order: ``agent``,
    ``arguments``, ``request_id``, ``tool``).

    Raises ``RequestError`` as ``call_sha256``.
    """
    if not isinstance(arguments, Mapping):
        raise RequestError("arguments must be a JSON object")
    if type(request_id) is not str or type(agent_id) is not str or type(tool) is not str:
        raise RequestError("request id, agent and tool must be strings")
    args = canonical(arguments)
    call = b"".join(
        (
            b'{"agent":',
            canonical_plain(agent_id),
            b',"arguments":',
            args,
            b',"request_id":',
            canonical_plain(request_id),
            b',"tool":',
            canonical_plain(tool),
            b"}",
        )
    )
    return sha256_hex(args), sha256_hex(call)


__all__ = [
    "arguments_sha256",
    "call_digests",
    "call_sha256",
    "canonical",
    "canonical_plain",
    "is_plain",
    "sha256_hex",
]
