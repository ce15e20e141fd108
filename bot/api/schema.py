"""Validation of agent request bodies (the JSON Schemas in ``bot.api.openapi`` describe the
same rules). Every problem is collected so a 400 answer lists them all."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from bot.domain import JSON, Outcome, ToolCall
from bot.errors import RequestError

TOOL_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,199}$")
DIGEST_PATTERN = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]{16,512}$")
MAX_DEPTH = 32
MAX_JUSTIFICATION = 8000
MAX_KEY = 1024

SUBMIT_KEYS = {"tool", "arguments", "justification", "context", "artifact_digest", "callback_url"}
EXECUTION_KEYS = {"grant", "outcome", "detail", "arguments"}


def depth(value: JSON, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a JSON value, stopping early past ``limit``."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while stack:
        item, d = stack.pop()
        if d > deepest:
            deepest = d
            if deepest > limit:
                return deepest
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item)
    return deepest


def _check_object(name: str, value: Any, errors: list[str]) -> dict[str, JSON]:
    if not isinstance(value, dict):
        errors.append(f"{name}: must be a JSON object")
        return {}
    if depth(value) > MAX_DEPTH:
        errors.append(f"{name}: nested deeper than {MAX_DEPTH} levels")
    return value


def parse_submission(body: Any) -> tuple[ToolCall, str | None, str | None]:
    """Validate a ``POST /v1/requests`` body. Returns (call, artifact_digest, callback_url).
    Raises ``RequestError`` listing every problem."""
    errors: list[str] = []
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    for key in sorted(set(body) - SUBMIT_KEYS):
        errors.append(f"{key}: unknown field")
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
    context = _check_object("context", body.get("context") or {}, errors)
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
    if not isinstance(value, str) or len(value) > 2048:
        return [f"{name}: must be an http(s) URL"]
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
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
    detail = _check_object("detail", body.get("detail") or {}, errors)
    arguments = body.get("arguments")
    if arguments is not None:
        arguments = _check_object("arguments", arguments, errors)
    if errors:
        raise RequestError("request body is not valid", details=errors)
    if not isinstance(grant, str) or outcome is None:  # unreachable: errors were raised
        raise RequestError("request body is not valid")
    return grant, outcome, detail, arguments
