"""``signoff init``: writes a working home (config, signing key, example policy, demo agent).
Never overwrites an existing file."""

from __future__ import annotations

import asyncio
import os
from importlib import resources
from pathlib import Path

from bot.errors import ConfigError
from bot.evidence.keys import KeyRing
from bot.settings import Settings, load_settings

DEMO_AGENT = "demo-agent"
TOKEN_FILE = "demo-agent.token"  # noqa: S105 - a file name, not a secret

CONFIG_TEMPLATE = """\
# signoff configuration (README.md, "Configuration"). ${VAR} reads the environment;
# an unset variable means "off".
server:
  host: 127.0.0.1
  port: 8080
  public_url: http://127.0.0.1:8080
database:
  url: "sqlite:///./signoff.db"
keys:
  dir: ./keys
policy:
  paths: [./policies]
slack:
  bot_token: ${SLACK_BOT_TOKEN}
  signing_secret: ${SLACK_SIGNING_SECRET}
  api_base_url: https://slack.com/api/
  escalation_channel: ${SLACK_ESCALATION_CHANNEL}
teams:
  app_id: ${TEAMS_APP_ID}
  app_password: ${TEAMS_APP_PASSWORD}
  tenant_id: ${TEAMS_TENANT_ID}
pagerduty:
  routing_key: ${PAGERDUTY_ROUTING_KEY}
  events_url: https://events.pagerduty.com/v2/enqueue
console:
  enabled: true
email:
  # the email channel is on when this is set (smtp://host:port, smtps://…, smtp+starttls://…)
  smtp_url: ${SIGNOFF_SMTP_URL}
  from: signoff@example.com
log:
  # the newest checkpoint, outside the database: a restored or rewritten database that
  # does not extend it stops the server (README.md, "Evidence formats")
  publish_file: ./checkpoints/latest
"""


def example_policy(name: str = "example.yaml") -> str:
    """The shipped example policy (or, with ``example.cases.yaml``, its table cases)."""
    return (resources.files("policies") / name).read_text(encoding="utf-8")


def _write_new(path: Path, text: str, mode: int = 0o644) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return True


def init_home(home: Path) -> list[str]:
    """Create what is missing in ``home``; return one line per thing done or kept.
    Raises ``ConfigError``."""
    out: list[str] = []
    try:
        home.mkdir(parents=True, exist_ok=True)
        (home / "policies").mkdir(exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{home}: cannot create the home folder ({exc.strerror})") from exc
    config = home / "signoff.yaml"
    out.append(("wrote " if _write_new(config, CONFIG_TEMPLATE) else "kept ") + str(config))
    policy = home / "policies" / "example.yaml"
    out.append(("wrote " if _write_new(policy, example_policy()) else "kept ") + str(policy))
    cases = home / "policies" / "example.cases.yaml"
    cases_text = example_policy(cases.name)
    out.append(("wrote " if _write_new(cases, cases_text) else "kept ") + str(cases))
    settings = load_settings(config)
    keydir = settings.path(settings.keys.dir)
    if keydir.exists() and any(keydir.iterdir()):
        out.append(f"kept {keydir} (signing key {KeyRing.load(keydir).kid})")
    else:
        ring = KeyRing.create(keydir)
        out.append(f"wrote {keydir} (new Ed25519 signing key {ring.kid})")
    token_path = home / TOKEN_FILE
    if token_path.exists():
        out.append(f"kept {token_path}")
    else:
        token = asyncio.run(_register_demo(settings))
        if token is None:
            out.append(f"kept agent {DEMO_AGENT} (already registered; its token is not stored)")
        else:
            _write_new(token_path, token + "\n", 0o600)
            out.append(f"wrote {token_path} (token of agent {DEMO_AGENT})")
    return out


async def _register_demo(settings: Settings) -> str | None:
    from adapters.main import open_store
    from bot.clock import SystemClock
    from bot.domain import Agent
    from bot.ids import new_token, token_hash

    store = await open_store(settings)
    try:
        if await store.get_agent(DEMO_AGENT) is not None:
            return None
        token = new_token()
        await store.add_agent(
            Agent(
                id=DEMO_AGENT,
                token_hash=token_hash(token),
                created_at=SystemClock().now(),
                labels={"demo": "true"},
            )
        )
        return token
    finally:
        await store.close()
