"""A tool call's arguments on the agent side: the JSON snapshot signoff hashes, the binding
of a function call, and the call rebuilt from an approver's edit. Pure functions.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from typing import Any, cast

from adapters.agent.errors import GrantRefused


def json_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON snapshot (deep copy) of ``arguments``. Raises ``TypeError`` when a value is
    not JSON (signoff hashes and shows the exact arguments, so they must be JSON)."""
    try:
        snapshot = json.loads(json.dumps(dict(arguments), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"tool arguments must be JSON-serialisable: {exc}") from exc
    return cast(dict[str, Any], snapshot)


def bound_arguments(
    signature: inspect.Signature, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> inspect.BoundArguments:
    """Bind a call like the function would, with defaults applied."""
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return bound


def rebound(
    signature: inspect.Signature, approved: Mapping[str, Any], tool: str
) -> inspect.BoundArguments:
    """The function's arguments rebuilt from an approver's edit. Raises ``GrantRefused``
    when the edit names parameters the function does not have (nothing runs)."""
    params = signature.parameters
    unknown = [k for k in approved if k not in params]
    if unknown:
        raise GrantRefused(tool, f"the edited arguments name unknown parameters {unknown}")
    values: dict[str, Any] = {}
    for key, value in approved.items():
        kind = params[key].kind
        values[key] = tuple(value) if kind is inspect.Parameter.VAR_POSITIONAL else value
    try:
        bound = inspect.BoundArguments(signature, values)
        # Every required parameter must be present, as for a normal call.
        signature.bind(*bound.args, **bound.kwargs)
    except TypeError as exc:
        raise GrantRefused(tool, f"the edited arguments do not fit the function: {exc}") from None
    return bound


__all__ = ["bound_arguments", "json_arguments", "rebound"]
