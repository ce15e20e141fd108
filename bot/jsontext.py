"""JSON text read strictly at orjson's speed: ``decode_json`` returns what the standard
library's decoder with duplicate-key and constant checks returns (its errors too), taking
orjson's result only when the two cannot differ. Agent request bodies and attestation
payloads are read with it.

Owns no I/O; imports nothing of signoff's."""

from __future__ import annotations

import json
from typing import Any

import orjson


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Duplicate object keys are refused (SPEC §6 answers 400): RFC 8259 leaves them
    undefined and parsers disagree on which wins, so what was approved could differ from
    what runs."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate object key {dup[:64]!r}")
    return obj


# one decoder for every text (``json.loads`` with an option builds a new one per call)
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
_QUOTE, _BACKSLASH = ord('"'), b"\\"
# an integer literal orjson may read differently (past 64 bits it makes a float): a run of
# 19 digits, found as 19 zeros once every digit reads 0 (a regex scan cost ~1.5 us a text)
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19


def decode_json(raw: bytes) -> Any:
    """The JSON value of ``raw`` as the standard library's decoder with duplicate-key and
    constant checks reads it (its errors too), at orjson's speed for the usual text.

    orjson keeps the last of duplicate keys silently, so its result is taken only when that
    cannot have happened: with no backslash in ``raw``, each string there and in orjson's
    encoding of the result is delimited by exactly two ``"``, and a dropped duplicate key
    leaves fewer of them in the result. Anything else (escapes, 19-digit runs, anything
    orjson refuses) is decoded by the standard library, which raises the precise error.
    Raises ``UnicodeDecodeError``, ``RecursionError``, ``ValueError``."""
    if _BACKSLASH not in raw and _LONG_DIGITS not in raw.translate(_DIGITS_AS_ZERO):
        try:
            value = orjson.loads(raw)
            if orjson.dumps(value).count(_QUOTE) == raw.count(_QUOTE):
                return value
        except (orjson.JSONDecodeError, orjson.JSONEncodeError):
            pass
    return _DECODER.decode(raw.decode("utf-8"))
