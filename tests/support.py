"""Test support: write a signoff home (config, key, policy), wait on a condition, and build
a `Gate` on the escalation policy for the step-machine tests."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable
from pathlib import Path

from bot.evidence.keys import KeyRing
from bot.policy.holder import PolicyHolder
from bot.ports import Clock
from bot.service import Gate
from bot.store import SqlStore

POLICY = """\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {name: test, version: "t1"}
groups:
  finance:
    console: {users: [alice, erin]}
  leads:
    console: {users: [carol]}
  security:
    console: {users: [sam]}
defaults:
  unknown_tool: confirm
  sla: 15m
  approvers: {groups: [security]}
rules:
  - name: reads
    tool: "*.read"
    tier: auto
  - name: large-transfer
    tool: payments.transfer
    when: args.amount >= 10000
    tier: confirm
    approvers: {groups: [finance]}
    sla: 15m
  - name: dual-transfer
    tool: payments.wire
    tier: confirm
    approvers: {groups: [finance], quorum: 2}
  - name: small-transfer
    tool: payments.transfer
    tier: auto
    rate_limit: {max: 3, per: 1h, key: agent}
  - name: notify-email
    tool: email.send
    tier: notify
    approvers: {groups: [finance]}
  - name: no-force-push
    tool: repos.force_push
    when: args.branch in ["main", "release"]
    tier: block
    reason: force-push to protected branches is never allowed
"""


def write_home(
    root: Path,
    *,
    policy: str = POLICY,
    database_url: str | None = None,
    port: int = 8080,
    extra: str = "",
) -> Path:
    """Create a home under ``root`` and return the path of its signoff.yaml."""
    (root / "policies").mkdir(parents=True, exist_ok=True)
    (root / "policies" / "policy.yaml").write_text(policy, encoding="utf-8")
    KeyRing.create(root / "keys")
    url = database_url or f"sqlite:///{root / 'signoff.db'}"
    config = root / "signoff.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            server: {{host: 127.0.0.1, port: {port}, public_url: "http://127.0.0.1:{port}"}}
            database: {{url: "{url}"}}
            keys: {{dir: ./keys}}
            policy: {{paths: [./policies], watch: false}}
            """
        )
        + textwrap.dedent(extra),
        encoding="utf-8",
    )
    return config


async def until(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Wait until ``condition()`` is true (checked every 5 ms): tests wait on the state they
    need, not for a guessed number of seconds. Fails after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        await asyncio.sleep(0.005)


ESCALATION_POLICY = """\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {name: escalation, version: "e1"}
groups:
  finance: {console: {users: [alice]}}
  leads: {console: {users: [carol]}}
defaults:
  unknown_tool: confirm
  sla: 15m
  approvers: {groups: [finance]}
rules:
  - name: large-transfer
    tool: payments.transfer
    tier: confirm
    approvers: {groups: [finance]}
    sla: 6s
    escalation:
      - {after: 2s, remind: true}
      - {after: 4s, to: leads, page: true}
      - {after: 6s, action: deny}
  - name: quiet-delete
    tool: db.delete
    tier: confirm
    approvers: {groups: [finance]}
    sla: 3s
"""


async def make_gate(tmp_path: Path, clock: Clock, store: SqlStore | None = None) -> Gate:
    """A ``Gate`` on ``ESCALATION_POLICY`` and a SQLite file in ``tmp_path`` (keys and
    policy file made once, so a second call is another process on the same home)."""
    policy = tmp_path / "policy.yaml"
    if not policy.exists():
        policy.write_text(ESCALATION_POLICY, encoding="utf-8")
    keys_dir = tmp_path / "keys"
    keys = KeyRing.load(keys_dir) if keys_dir.exists() else KeyRing.create(keys_dir)
    store = store or await SqlStore.open(f"sqlite:///{tmp_path / 'signoff.db'}", clock=clock)
    return Gate(store=store, policies=PolicyHolder([policy]), keys=keys, clock=clock)
