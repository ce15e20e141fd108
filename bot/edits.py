"""Arguments an approver changes before approving (rule option ``editable``, SPEC §5/§7).

Owns the checks on a proposed edit and the ``Edit`` it becomes: the rule must allow edits,
the edit names the request's own tool (it can never change the tool), the arguments are a
JSON object whose canonical form is at most ``EDIT_LIMIT`` bytes, and when the agent sent a
JSON Schema for its tool in ``context.arguments_schema`` the edit must validate against it
(the ``jsonschema`` library, the schema's own dialect, formats checked).

Quorum rule for edits: an edit is its editor's approval of the edited version. Approvals of
an earlier version stop counting (an edit resets them), so every approval that makes quorum
is of the exact arguments the grant binds; the earlier approvers may approve again, now the
edited version. Pure functions; every check raises ``RequestError`` (or ``NotAuthorized``
when the rule does not allow edits).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.domain import JSON, Approver, Edit, Request
from bot.errors import NotAuthorized, RequestError
from bot.evidence.canonical import call_digests, canonical

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

EDIT_LIMIT = 256 * 1024
"""Largest edited arguments (RFC 8785 bytes): the API's own body limit."""

SCHEMA_FIELD = "arguments_schema"


@dataclass(frozen=True, slots=True)
class Proposal:
    """What an approver submitted: the call's tool (which must not change) and arguments."""

    tool: str
    arguments: Any


class EditNotAllowed(NotAuthorized):
    """The request's rule does not let approvers change the arguments."""


def check_edit(request: Request, proposal: Proposal, approver: Approver, now: datetime) -> Edit:
    """The ``Edit`` that ``proposal`` makes of ``request``. Raises ``EditNotAllowed`` when the
    rule is not ``editable``, ``RequestError`` when the edit changes the tool, is not a JSON
    object, is over ``EDIT_LIMIT`` or breaks ``context.arguments_schema``."""
    if not request.editable:
        raise EditNotAllowed("this request's rule does not allow editing the arguments")
    if proposal.tool != request.call.tool:
        raise RequestError(
            f"an edit cannot change the tool (it is {request.call.tool!r}); edit the arguments"
        )
    arguments = proposal.arguments
    if not isinstance(arguments, dict):
        raise RequestError("the edited arguments must be a JSON object")
    try:
        size = len(canonical(arguments))
    except (TypeError, ValueError) as exc:
        raise RequestError(f"the edited arguments are not plain JSON: {exc}") from None
    if size > EDIT_LIMIT:
        raise RequestError(
            f"the edited arguments are {size:,} bytes; at most {EDIT_LIMIT:,} are accepted"
        )
    validate_arguments(request.call.context, arguments)
    args_digest, call_digest = call_digests(
        request.id, request.agent_id, request.call.tool, arguments
    )
    return Edit(
        arguments=arguments,
        arguments_sha256=args_digest,
        call_sha256=call_digest,
        by=approver.key,
        by_name=approver.display_name or approver.user_id,
        at=now,
    )


def validate_arguments(context: Mapping[str, JSON], arguments: Mapping[str, JSON]) -> None:
    """Check ``arguments`` against the tool's JSON Schema from ``context.arguments_schema``
    (none given: nothing to check). Raises ``RequestError`` naming the first problem."""
    schema = context.get(SCHEMA_FIELD)
    if schema is None:
        return
    if not isinstance(schema, dict):
        raise RequestError("context.arguments_schema is not a JSON Schema")
    import jsonschema  # loaded with the first edit checked against a schema, not at start
    from jsonschema.exceptions import SchemaError

    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
        error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    except SchemaError as exc:
        raise RequestError(
            f"context.arguments_schema is not a valid schema: {exc.message}"
        ) from None
    if error is not None:
        raise RequestError(f"the edit breaks the tool's schema: {_where(error)}{error.message}")


def _where(error: ValidationError) -> str:
    path = "/".join(str(p) for p in error.absolute_path)
    return f"at /{path}: " if path else ""


def parse_proposal(text: str, tool: str) -> Proposal:
    """A proposal from an editor's JSON text: either the arguments object alone, or
    ``{"tool": …, "arguments": {…}}`` (so a changed tool is seen and refused). Raises
    ``RequestError`` for text that is not JSON."""
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates)
    except ValueError as exc:
        raise RequestError(f"the edited arguments are not valid JSON: {exc}") from None
    if isinstance(value, dict) and set(value) == {"tool", "arguments"}:
        return Proposal(str(value["tool"]), value["arguments"])
    return Proposal(tool, value)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out
