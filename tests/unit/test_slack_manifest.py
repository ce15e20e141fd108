"""The Slack app manifest asks for exactly the scopes of the Web API methods signoff calls."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

# Web API method (as slack_sdk names it) -> the bot scope it needs (api.slack.com/methods).
SCOPES = {
    "chat_postMessage": "chat:write",
    "chat_update": "chat:write",
    "chat_postEphemeral": "chat:write",
    "users_info": "users:read",
    "users_lookupByEmail": "users:read.email",
    "usergroups_users_list": "usergroups:read",
    "views_open": None,
}


def called_methods() -> set[str]:
    """Every ``client.<method>(…)`` call in the adapter's source."""
    found: set[str] = set()
    for path in (ROOT / "adapters" / "slack").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr == "client"
            ):
                found.add(node.func.attr)
    return found


def test_scopes_are_exactly_those_used() -> None:
    manifest = yaml.safe_load((ROOT / "manifests" / "slack-app.yaml").read_text("utf-8"))
    used = called_methods()
    assert used <= set(SCOPES), f"unmapped methods: {used - set(SCOPES)}"
    needed = {SCOPES[m] for m in used} - {None}
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == needed
    # users:read.email rides on users.info too (the e-mail in the profile)
    assert "users:read.email" in needed


def test_interactivity_points_at_the_events_endpoint() -> None:
    manifest = yaml.safe_load((ROOT / "manifests" / "slack-app.yaml").read_text("utf-8"))
    settings = manifest["settings"]
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["interactivity"]["request_url"].endswith("/slack/events")
    assert settings["org_deploy_enabled"] is False
    assert settings["socket_mode_enabled"] is False
    assert manifest["features"]["bot_user"]["display_name"] == "signoff"
