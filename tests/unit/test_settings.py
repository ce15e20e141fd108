"""Configuration parsing (SPEC §4): interpolation, unknown keys, wrong types, secrets."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.settings import Network, Secret, load_settings, parse_settings


def test_defaults_and_env_interpolation() -> None:
    text = """
server: {port: 9000}
slack:
  bot_token: ${SLACK_BOT_TOKEN}
  signing_secret: ${SLACK_SIGNING_SECRET}
  escalation_channel: ${ESC:-C0DEFAULT}
teams:
  app_id: ${TEAMS_APP_ID}
grants: {ttl: 5m}
"""
    s = parse_settings(text, environ={"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "shh"})
    assert s.server.port == 9000 and s.server.host == "127.0.0.1"
    assert s.slack.bot_token == Secret("xoxb-1") and s.slack_enabled
    assert s.slack.escalation_channel == "C0DEFAULT"
    assert s.teams.app_id is None and not s.teams_enabled
    assert s.grants.ttl == timedelta(minutes=5)


def test_secrets_never_show_in_repr() -> None:
    s = parse_settings("slack: {bot_token: xoxb-secret-value}", environ={})
    assert "xoxb-secret-value" not in repr(s)
    assert "xoxb-secret-value" not in str(s.slack)
    assert s.slack.bot_token is not None and s.slack.bot_token.reveal() == "xoxb-secret-value"


@pytest.mark.parametrize(
    ("text", "where", "key"),
    [
        ("server:\n  port: 80\n  colour: red\n", ":3:", "server.colour"),
        ("server:\n  port: eighty\n", ":2:", "server.port"),
        ("console:\n  enabled: maybe\n", ":2:", "console.enabled"),
        ("grants:\n  ttl: soon\n", ":2:", "grants.ttl"),
        ("nonsense: 1\n", ":1:", "nonsense"),
        ("policy:\n  paths: {a: 1}\n", ":2:", "policy.paths"),
        ("server: [1, 2]\n", ":1:", "server"),
        ("server:\n  trusted_proxies: [10.0.0.0/8, not-a-net]\n", ":2:", "server.trusted_proxies"),
    ],
)
def test_errors_name_file_line_and_key(text: str, where: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(text, source="signoff.yaml", environ={})
    message = info.value.diagnostics()
    assert message.startswith("signoff.yaml" + where), message
    assert key in message


def test_yaml_syntax_error_has_a_line() -> None:
    with pytest.raises(ConfigError, match=r"^cfg.yaml:2: invalid YAML"):
        parse_settings("server:\n\tport: 1\n", source="cfg.yaml", environ={})


def test_secret_value_not_echoed_in_type_errors(tmp_path: Path) -> None:
    path = tmp_path / "signoff.yaml"
    path.write_text("slack:\n  bot_token: [${TOKEN}]\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={"TOKEN": "xoxb-very-secret"})
    assert "xoxb-very-secret" not in info.value.diagnostics()


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    path = tmp_path / "signoff.yaml"
    path.write_text('database: {url: "sqlite:///./x.db"}\nkeys: {dir: ./k}\n')
    s = load_settings(path, environ={})
    assert s.database_url == f"sqlite:///{(tmp_path / 'x.db').resolve()}"
    assert s.path(s.keys.dir) == tmp_path / "k"


def test_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_settings(tmp_path / "nope.yaml")


def test_trusted_proxies_are_networks() -> None:
    s = parse_settings(
        "server:\n  trusted_proxies: [10.0.0.0/8, '::1', 192.0.2.7]\n", source="x", environ={}
    )
    assert s.server.trusted_proxies == (
        Network("10.0.0.0/8"),
        Network("::1/128"),
        Network("192.0.2.7/32"),
    )
    assert "10.200.0.1" in s.server.trusted_proxies[0]
    assert "11.0.0.1" not in s.server.trusted_proxies[0]
    assert "not an address" not in s.server.trusted_proxies[0]
