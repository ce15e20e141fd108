"""The chaos rig: one signoff home (policy, keys, database, a console user, an agent), a fake
Slack workspace and a fake PagerDuty, and real ``signoff serve`` processes on it that the
harness starts, SIGKILLs and starts again.

SQLite runs one process (its database is one process's); PostgreSQL runs two replicas on one
database, so escalation steps are claimed across processes while one of them dies.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

from bench.fakes.slack_api import FakeSlack
from bot.evidence.keys import KeyRing
from tests.e2e.serving import clean_env
from tests.fakes.pagerduty import FakePagerDuty
from tests.serve_process import free_port

SIGNOFF = str(Path(sys.executable).with_name("signoff"))
SIGNING_SECRET = "chaos-signing-secret"
ROUTING_KEY = "CHAOSROUTINGKEY0123456789ABCDEFG"
PASSWORD = "correct horse battery"

#: transfers escalate fast (remind at 1 s, to the leads with a page at 2 s, denied at 3 s);
#: refunds wait for a human (console or Slack); reads are auto; force-pushes are blocked
POLICY = """\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {name: chaos, version: "chaos-1"}
groups:
  finance:
    slack: {channel: C0FINANCE, users: [U0ALICE]}
    console: {users: [alice]}
  leads:
    slack: {channel: C0LEADS, users: [U0CAROL]}
defaults:
  unknown_tool: confirm
  sla: 15m
  approvers: {groups: [finance]}
rules:
  - name: reads
    tool: files.read
    tier: auto
  - name: no-force-push
    tool: repos.force_push
    tier: block
    reason: force-push is never allowed
  - name: refund
    tool: payments.refund
    tier: confirm
    approvers: {groups: [finance]}
    sla: 15m
  - name: transfer
    tool: payments.transfer
    tier: confirm
    approvers: {groups: [finance]}
    sla: 3s
    escalation:
      - {after: 1s, remind: true}
      - {after: 2s, to: leads, page: true}
      - {after: 3s, action: deny}
"""
#: the ladder a transfer must follow: steps 0 and 1 once each, then expired once
TRANSFER_STEPS = (0, 1)


class Home:
    """The signoff home every process of a run shares."""

    def __init__(self, root: Path, database_url: str, slack: FakeSlack, pd: FakePagerDuty):
        self.root = root
        (root / "policies").mkdir(parents=True, exist_ok=True)
        (root / "policies" / "policy.yaml").write_text(POLICY, encoding="utf-8")
        KeyRing.create(root / "keys")
        self.database_url = database_url
        self.slack = slack
        self.pd = pd
        self.token = ""
        slack.add_user("U0ALICE", "alice", "alice@example.com")
        slack.add_user("U0CAROL", "carol", "carol@example.com")

    def config(self, port: int) -> Path:
        path = self.root / f"signoff-{port}.yaml"
        path.write_text(
            textwrap.dedent(
                f"""\
                server: {{host: 127.0.0.1, port: {port}, public_url: "http://127.0.0.1:{port}"}}
                database: {{url: "{self.database_url}"}}
                keys: {{dir: ./keys}}
                policy: {{paths: [./policies], watch: false}}
                log: {{publish_file: ./checkpoints/latest}}
                slack:
                  bot_token: {self.slack.token}
                  signing_secret: {SIGNING_SECRET}
                  api_base_url: {self.slack.base_url}
                  escalation_channel: C0ESCALATE
                pagerduty:
                  routing_key: {ROUTING_KEY}
                  events_url: {self.pd.url}
                console: {{enabled: true}}
                """
            ),
            encoding="utf-8",
        )
        return path

    async def cli(self, *args: str, stdin: bytes = b"", check: bool = True) -> tuple[int, str]:
        """``signoff --config <a config of this home> ARGS``: (exit status, output)."""
        proc = await asyncio.create_subprocess_exec(
            SIGNOFF,
            "--config",
            str(self.config(free_port())),
            *args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=clean_env(),
            cwd=self.root,
        )
        out, _ = await proc.communicate(stdin)
        code = proc.returncode
        assert code is not None
        if check and code != 0:
            raise AssertionError(f"signoff {' '.join(args)} exited {code}:\n{out.decode()}")
        return code, out.decode()

    async def prepare(self) -> None:
        self.token = (await self.cli("agents", "add", "chaos-agent", "--quiet"))[1].strip()
        await self.cli("users", "add", "alice", "--password-stdin", stdin=PASSWORD.encode())
