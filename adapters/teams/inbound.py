"""The shape check of an authenticated activity before the Agents SDK and ``ApprovalBot`` see
it: the SDK logs an ERROR with a traceback for every body its ``Activity`` model refuses, and
fails the turn (a 501 and another traceback) when an activity lacks the parts its reply needs
(``recipient``, ``conversation``), and answers a card action whose ``value`` it refuses with
a 500. Such bodies get a clear 400 here, logged as a WARNING.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import pydantic
from microsoft_agents.activity import Activity, AdaptiveCardInvokeValue

from bot.errors import RequestError

#: the only invoke signoff answers (the cards' ``Action.Execute``)
CARD_ACTION = "adaptiveCard/action"
EXECUTE = "Action.Execute"
_SDK_LOG = logging.getLogger("microsoft_agents.activity.activity")


@contextlib.contextmanager
def _sdk_quiet() -> Iterator[None]:
    """Silence the SDK's traceback for a refused body (synchronous: nothing else runs)."""
    was = _SDK_LOG.disabled
    _SDK_LOG.disabled = True
    try:
        yield
    finally:
        _SDK_LOG.disabled = was


def _names_itself(part: object) -> bool:
    return isinstance(part, dict) and isinstance(part.get("id"), str) and bool(part["id"])


def check_activity(body: dict[str, Any]) -> None:
    """Raises ``RequestError`` unless ``body`` is an activity the SDK and ``ApprovalBot`` can
    answer without failing."""
    kind = body.get("type")
    if not isinstance(kind, str) or not kind:
        raise RequestError("an activity has a type")
    for part in ("conversation", "recipient"):
        if not _names_itself(body.get(part)):
            raise RequestError(f"an activity's {part} is an object with an id")
    if kind == "invoke":
        _check_card_action(body)
    try:
        with _sdk_quiet():
            Activity.model_validate(body)
    except (pydantic.ValidationError, TypeError, ValueError) as exc:  # ChannelId: TypeError
        raise RequestError("not a valid activity") from exc


def _check_card_action(body: dict[str, Any]) -> None:
    """Every refusal the SDK would answer itself carries an exception its JSON encoder
    cannot write (a 500 and a traceback): a card action's ``value`` is checked here."""
    if body.get("name") != CARD_ACTION:
        raise RequestError(f"signoff answers only {CARD_ACTION} invokes")
    value = body.get("value")
    action = value.get("action") if isinstance(value, dict) else None
    if not isinstance(action, dict) or action.get("type") != EXECUTE:
        raise RequestError(f"a card action's value holds an {EXECUTE} action")
    if not isinstance(action.get("verb"), str) or not isinstance(action.get("data"), dict):
        raise RequestError("a card action has a verb and data")
    try:
        AdaptiveCardInvokeValue.model_validate(value)
    except pydantic.ValidationError as exc:
        raise RequestError("not a valid card action") from exc


__all__ = ["CARD_ACTION", "check_activity"]
