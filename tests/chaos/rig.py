"""The chaos rig: one signoff home (policy, keys, database, a console user, an agent), a fake
Slack workspace, a fake PagerDuty and the agent's callback endpoint, and real ``signoff serve``
processes on it that the harness starts, SIGKILLs and starts again.

SQLite runs one process (its database is one process's); PostgreSQL runs two replicas on one
database, so escalation steps are claimed across processes while one of them dies.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from bench.fakes.slack_api import FakeSlack
from tests.e2e import serving as e2e
from tests.fakes.pagerduty import FakePagerDuty

SIGNING_SECRET = e2e.SIGNING_SECRET  # what the home's config gives the Slack adapter
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


class Callbacks:
    """The agent's callback endpoint: the ``webhook-id`` of every POST it received."""

    def __init__(self) -> None:
        self.received: set[str] = set()
        self.posts = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _hook(self, request: web.Request) -> web.Response:
        await request.read()
        self.posts += 1
        self.received.add(request.headers["webhook-id"])
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class Home(e2e.Home):
    """The signoff home every process of a run shares (console on, checkpoints published,
    callbacks to the loopback endpoint allowed)."""

    def __init__(self, root: Path, database_url: str, slack: FakeSlack, pd: FakePagerDuty):
        super().__init__(
            root,
            database_url,
            slack,
            pd,
            policy=POLICY,
            console=True,
            publish_file=True,
            extra_config="callbacks: {allow_private_networks: true}\n",
        )
        self.callbacks = Callbacks()
        slack.add_user("U0ALICE", "alice", "alice@example.com")
        slack.add_user("U0CAROL", "carol", "carol@example.com")

    async def prepare(self) -> None:
        self.token = (await self.cli("agents", "add", "chaos-agent", "--quiet")).strip()
        await self.cli("users", "add", "alice", "--password-stdin", stdin=PASSWORD.encode())
