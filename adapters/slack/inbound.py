"""The shape of what Slack POSTs to ``/slack/events``, checked before slack-bolt sees it.

bolt trusts a correctly signed body: a payload that is not a JSON object, a ``user`` that is
a number, an ``actions`` list holding ``null`` or a view without its ``type`` crash its
routing with a ``KeyError``/``TypeError`` and answer 500 with a traceback in the log. Slack
never sends those, but anyone holding the signing secret can, and a fail-closed edge answers
them 400 and touches nothing. The rules below are those of Slack's payload reference
(https://api.slack.com/reference/interaction-payloads, .../events-api): each field bolt or
signoff reads has its documented type when present; fields neither reads are not looked at.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bot.errors import RequestError

Check = Callable[[Any, str], str | None]


def _text(value: Any, where: str) -> str | None:
    return None if isinstance(value, str) else f"{where} must be a string"


def _flag(value: Any, where: str) -> str | None:
    return None if isinstance(value, bool | str) else f"{where} must be a boolean"


def _obj(
    fields: Mapping[str, Check], required: tuple[str, ...] = (), not_null: tuple[str, ...] = ()
) -> Check:
    """An object whose listed fields (when present and not null) pass their checks;
    ``required`` fields must be there, ``not_null`` ones may be absent but never null."""

    def check(value: Any, where: str) -> str | None:
        if not isinstance(value, dict):
            return f"{where} must be an object"
        for key in required:
            if value.get(key) is None:
                return f"{where}.{key} is required"
        for key in not_null:
            if key in value and value[key] is None:
                return f"{where}.{key} must not be null"
        for key, inner in fields.items():
            if value.get(key) is not None and (found := inner(value[key], f"{where}.{key}")):
                return found
        return None

    return check


def _list(item: Check, *, non_empty: bool = False) -> Check:
    def check(value: Any, where: str) -> str | None:
        if not isinstance(value, list) or (non_empty and not value):
            return f"{where} must be a{' non-empty' if non_empty else ''} list"
        for i, element in enumerate(value):
            if found := item(element, f"{where}[{i}]"):
                return found
        return None

    return check


def _at_most_one(item: Check) -> Check:
    """A list of at most one ``item``: slack-bolt (1.2x) logs through a context logger it has
    not set yet when a view submission carries several ``response_urls`` and answers 500;
    signoff's modals ask for none (no ``response_url_enabled`` input)."""

    def check(value: Any, where: str) -> str | None:
        if isinstance(value, list) and len(value) > 1:
            return f"{where} must hold at most one entry"
        return _list(item)(value, where)

    return check


def _map(value_check: Check) -> Check:
    """An object whose every value passes ``value_check`` (keys are the sender's names)."""

    def check(value: Any, where: str) -> str | None:
        if not isinstance(value, dict):
            return f"{where} must be an object"
        for key, inner in value.items():
            if found := value_check(inner, f"{where}.{key}"):
                return found
        return None

    return check


def _either(*checks: Check) -> Check:
    """Passes when any check passes (Slack sends some fields as an id or as an object)."""

    def check(value: Any, where: str) -> str | None:
        found = [c(value, where) for c in checks]
        return None if None in found else found[-1]

    return check


_IDS = {"id": _text, "team_id": _text, "enterprise_id": _text, "name": _text}
#: team / user / channel / enterprise: an id string or an object with string ids (in an
#: interaction payload team, user and channel are always objects: signoff reads them so)
_ENTITY = _either(_text, _obj(_IDS))
_ENTITIES = {key: _ENTITY for key in ("team", "user", "channel", "enterprise")}
_INTERACTION_ENTITIES = {**_ENTITIES, **{key: _obj(_IDS) for key in ("team", "user", "channel")}}
_SCALARS = {
    key: _text
    for key in (
        "type",
        "trigger_id",
        "response_url",
        "api_app_id",
        "token",
        "team_id",
        "user_id",
        "channel_id",
        "enterprise_id",
        "callback_id",
    )
}
_ACTION = _obj(
    {k: _text for k in ("action_id", "block_id", "value", "type", "action_ts")},
    required=("action_id",),
)
_VIEW = _obj(
    {
        **{k: _text for k in ("id", "type", "callback_id", "private_metadata", "hash")},
        **{k: _text for k in ("team_id", "app_installed_team_id", "bot_id")},
        # block id -> action id -> the input's state (a text input's value is a string)
        "state": _obj({"values": _map(_map(_obj({"type": _text, "value": _text})))}),
    },
    required=("type",),
)
_MESSAGE = _obj({"ts": _text, "thread_ts": _text, "text": _text, **_ENTITIES})
_AUTHORIZATION = _obj(
    {"enterprise_id": _text, "team_id": _text, "user_id": _text, "is_enterprise_install": _flag}
)
_EVENT = _obj(
    {**_SCALARS, **_ENTITIES, "message": _MESSAGE, "previous_message": _MESSAGE},
    required=("type",),
)
PAYLOAD = _obj(
    {
        **_SCALARS,
        **_INTERACTION_ENTITIES,
        "is_enterprise_install": _flag,
        "is_ext_shared_channel": _flag,
        "actions": _list(_ACTION, non_empty=True),
        "view": _VIEW,
        "container": _obj({k: _text for k in ("type", "message_ts", "channel_id", "view_id")}),
        "message": _MESSAGE,
        "previous_message": _MESSAGE,
        "event": _EVENT,
        "authorizations": _list(_AUTHORIZATION),
        "response_urls": _at_most_one(
            _obj({k: _text for k in ("block_id", "action_id", "channel_id", "response_url")})
        ),
        "challenge": _text,
    },
    # bolt reads these as ``body.get(key, {})...`` or ``len(body[key])`` once present
    not_null=("event", "view", "function", "response_urls"),
)
#: payload types whose listeners need a field: it must be there, not only well-typed
_NEEDS = {
    "block_actions": ("actions", "user"),
    "view_submission": ("view", "user"),
    "view_closed": ("view", "user"),
    "event_callback": ("event",),
}


def check_payload(body: Any) -> None:
    """Raise ``RequestError`` unless ``body`` (as bolt parsed it) has the documented shape."""
    if not isinstance(body, dict):
        raise RequestError("the Slack payload is not a JSON object")
    problem = PAYLOAD(body, "payload")
    if problem is None:
        for key in _NEEDS.get(str(body.get("type")), ()):
            if body.get(key) is None:
                problem = f"payload.{key} is required for {body['type']}"
                break
    if problem is not None:
        raise RequestError(f"malformed Slack payload: {problem}")
