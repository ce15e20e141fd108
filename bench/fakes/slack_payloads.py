"""Inbound Slack interaction payloads, signed exactly as Slack signs them.

Slack POSTs interactivity as ``application/x-www-form-urlencoded`` with one field,
``payload=<json>``, and headers ``X-Slack-Request-Timestamp`` and
``X-Slack-Signature: v0=hex(HMAC-SHA256(signing_secret, "v0:{timestamp}:{raw body}"))``
(https://api.slack.com/authentication/verifying-requests-from-slack).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

_counter = itertools.count(1)


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + ts.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def form(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def _user(user_id: str, team_id: str) -> dict[str, Any]:
    return {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": team_id}


def block_actions(
    action_id: str,
    value: str,
    *,
    user: str,
    team: str = "T0TEAM",
    channel: str = "C0FINANCE",
    message_ts: str = "1700000001.000100",
    trigger_id: str | None = None,
) -> dict[str, Any]:
    """A ``block_actions`` payload for a button click on a card."""
    n = next(_counter)
    return {
        "type": "block_actions",
        "user": _user(user, team),
        "api_app_id": "A0SIGNOFF",
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id or f"{n}.1.trigger{n:06d}",
        "team": {"id": team, "domain": "signoff-test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "approvals"},
        "message": {"type": "message", "ts": message_ts, "text": "card"},
        "response_url": "https://hooks.slack.com/actions/T0TEAM/1/x",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "signoff_actions",
                "text": {"type": "plain_text", "text": action_id},
                "value": value,
                "type": "button",
                "action_ts": f"{1_700_000_000 + n}.{n:06d}",
            }
        ],
    }


def view_submission(
    callback_id: str,
    private_metadata: str,
    values: dict[str, Any],
    *,
    user: str,
    team: str = "T0TEAM",
    view_id: str | None = None,
) -> dict[str, Any]:
    """A ``view_submission`` payload for a submitted modal."""
    n = next(_counter)
    return {
        "type": "view_submission",
        "team": {"id": team, "domain": "signoff-test"},
        "user": _user(user, team),
        "api_app_id": "A0SIGNOFF",
        "token": "legacy-verification-token",
        "trigger_id": f"{n}.1.trigger{n:06d}",
        "view": {
            "id": view_id or f"V{n:08d}",
            "team_id": team,
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": private_metadata,
            "hash": f"{n}.hash",
            "state": {"values": values},
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def reason_values(reason: str) -> dict[str, Any]:
    """The ``state.values`` of signoff's deny modal holding ``reason``."""
    return {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}
