"""Validation of agent request bodies (the JSON Schemas in ``bot.api.openapi`` describe the
same rules). Every problem is collected so a 400 answer lists them all."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.domain import JSON, Outcome, ToolCall
from bot.errors import RequestError
from bot.evidence.canonical import canonical

TOOL_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,199}$")
DIGEST_PATTERN = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]{16,512}$")
URL_PATTERN = re.compile(r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]")
MAX_URL = 2048
MAX_DEPTH = 32
MAX_JUSTIFICATION = 8000
MAX_KEY = 1024
MAX_NUMBER = 2**53 - 1  # I-JSON (RFC 7493): numbers an IEEE-754 double holds exactly

SUBMIT_KEYS = {"tool", "arguments", "justification", "context", "artifact_digest", "callback_url"}
EXECUTION_KEYS = {"grant", "outcome", "detail", "arguments"}


def scan(value: JSON, limit: int = MAX_DEPTH) -> tuple[int, bool]:
    """Nesting depth of a JSON value (stopping early past ``limit``) and whether it holds a
    number beyond ±``MAX_NUMBER`` (which has no RFC 8785 canonical form as an integer)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    too_big = False
    while stack:
        item, d = stack.pop()
        if d > deepest:
            deepest = d
            if deepest > limit:
                return deepest, too_big
        kind = type(item)
        if kind is dict:
            stack.extend((v, d + 1) for v in item.values())
        elif kind is list:
            stack.extend((v, d + 1) for v in item)
        elif (kind is int or kind is float) and not -MAX_NUMBER <= item <= MAX_NUMBER:
            too_big = True
    return deepest, too_big


def depth(value: JSON, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a JSON value, stopping early past ``limit``."""
    return scan(value, limit)[0]


def _or_empty(value: Any) -> Any:
    """An optional object: absent or ``null`` is ``{}``; anything else is checked as given."""
    return {} if value is None else value


def _check_object(
    name: str, value: Any, errors: list[str], *, canonical_form: bool = False
) -> dict[str, JSON]:
    """``value`` if it is a JSON object within the limits, else ``{}`` with ``errors`` told.
    With ``canonical_form``, also check it has an RFC 8785 form (no lone surrogates), for
    values that are only signed later."""
    if not isinstance(value, dict):
        errors.append(f"{name}: must be a JSON object")
        return {}
    deepest, too_big = scan(value)
    if deepest > MAX_DEPTH:
        errors.append(f"{name}: nested deeper than {MAX_DEPTH} levels")
    elif too_big:
        errors.append(f"{name}: numbers must lie within ±{MAX_NUMBER} (I-JSON, RFC 7493)")
    elif canonical_form and value:
        try:
            canonical(value)
        except RequestError as exc:
            errors.append(f"{name}: {exc.message}")
    return value


def parse_submission(body: Any) -> tuple[ToolCall, str | None, str | None]:
    """Validate a ``POST /v1/requests`` body. Returns (call, artifact_digest, callback_url).
    Raises ``RequestError`` listing every problem."""
    errors: list[str] = []
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    if not body.keys() <= SUBMIT_KEYS:
        errors.extend(f"{key}: unknown field" for key in sorted(set(body) - SUBMIT_KEYS))
    tool = body.get("tool")
    if tool is None:
        errors.append("tool: required")
    elif not isinstance(tool, str):
        errors.append("tool: must be a string")
    elif not TOOL_PATTERN.match(tool):
        errors.append(
            "tool: must be 1-200 characters of letters, digits and _ . : / - "
            "(e.g. payments.transfer)"
        )
    if "arguments" not in body:
        errors.append("arguments: required (use {} for none)")
    arguments = _check_object("arguments", body.get("arguments", {}), errors)
    justification = body.get("justification", "")
    if justification is None:
        justification = ""
    if not isinstance(justification, str):
        errors.append("justification: must be a string")
    elif len(justification) > MAX_JUSTIFICATION:
        errors.append(f"justification: longer than {MAX_JUSTIFICATION} characters")
    context = body.get("context")
    if context is None or context == {}:  # none given: nothing to check (the hot path)
        context = {}
    else:
        context = _check_object("context", context, errors, canonical_form=True)
    if "requested_by" in context and not isinstance(context["requested_by"], str):
        # SPEC §5: one string naming the requester (person key, e-mail or platform id); a
        # list or object could hide a name from the no-self-approval check.
        errors.append("context.requested_by: must be a string (one person key, email or id)")
    artifact = body.get("artifact_digest")
    if artifact is not None and (
        not isinstance(artifact, str) or not DIGEST_PATTERN.match(artifact)
    ):
        errors.append("artifact_digest: must look like sha256:<hex>")
    callback = body.get("callback_url")
    if callback is not None:
        errors.extend(_check_url("callback_url", callback))
    if errors:
        raise RequestError("request body is not valid", details=errors)
    return ToolCall(str(tool), arguments, str(justification), context), artifact, callback


def _check_url(name: str, value: Any) -> list[str]:
    if not isinstance(value, str) or len(value) > MAX_URL:
        return [f"{name}: must be an http(s) URL of at most {MAX_URL} characters"]
    if not URL_PATTERN.match(value):
        return [f"{name}: must be an absolute http(s) URL"]
    return []


def parse_execution(body: Any) -> tuple[str, Outcome, dict[str, JSON], Mapping[str, JSON] | None]:
    """Validate a ``POST /v1/requests/{id}/execution`` body. Raises ``RequestError``."""
    errors: list[str] = []
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    for key in sorted(set(body) - EXECUTION_KEYS):
        errors.append(f"{key}: unknown field")
    grant = body.get("grant")
    if not isinstance(grant, str) or not grant:
        errors.append("grant: required string (the grant from the approved request)")
    outcome_raw = body.get("outcome")
    outcome: Outcome | None = None
    try:
        outcome = Outcome(str(outcome_raw))
    except ValueError:
        errors.append("outcome: must be one of started, succeeded, failed")
    detail = _check_object("detail", _or_empty(body.get("detail")), errors, canonical_form=True)
    arguments = body.get("arguments")
    if arguments is not None:
        arguments = _check_object("arguments", arguments, errors)
    if errors:
        raise RequestError("request body is not valid", details=errors)
    if not isinstance(grant, str) or outcome is None:  # unreachable: errors were raised
        raise RequestError("request body is not valid")
    return grant, outcome, detail, arguments
