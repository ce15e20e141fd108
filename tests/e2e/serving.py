"""Real ``signoff serve`` processes on one shared home, as the escalation and replica
end-to-end tests run them: the home (config per port, keys, policy, database, pointed at the
fake Slack Web API and the fake PagerDuty Events API), one ``Server`` per process, and the
fixtures that start the fakes, an HTTP session and a scratch PostgreSQL database."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import textwrap
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest
import pytest_asyncio

from bench.fakes.slack_api import FakeSlack
from bench.serving import fresh_database
from bot.evidence.keys import KeyRing
from tests.fakes.pagerduty import FakePagerDuty
from tests.pg_cluster import admin_url
from tests.serve_process import SIGNOFF, free_port

SIGNING_SECRET = "e2e-signing-secret"
ROUTING_KEY = "E2EROUTINGKEY0123456789ABCDEFGHI"
#: the escalation ladder both tests' policies use: remind, escalate and page, deny (seconds)
STEPS = (2.0, 4.0, 6.0)
#: the policy rule with that ladder, for the end of a policy's ``rules:``
LADDER_RULE = """\
  - name: large-transfer
    tool: payments.transfer
    tier: confirm
    approvers: {groups: [finance]}
    sla: 6s
    escalation:
      - {after: 2s, remind: true}
      - {after: 4s, to: finance-leads, page: true}
      - {after: 6s, action: deny}
"""


class Home:
    """A signoff home every ``Server`` on it shares: a config per port, key, ``policy``,
    database, the fake Slack and PagerDuty; one agent token once ``add_agent`` ran."""

    def __init__(
        self,
        root: Path,
        database_url: str,
        slack: FakeSlack,
        pd: FakePagerDuty,
        *,
        policy: str,
        console: bool = False,
        publish_file: bool = False,
        extra_config: str = "",
    ) -> None:
        self.root = root
        self.extra_config = extra_config
        self.console = console
        self.publish_file = publish_file
        (root / "policies").mkdir(parents=True, exist_ok=True)
        (root / "policies" / "policy.yaml").write_text(policy, encoding="utf-8")
        KeyRing.create(root / "keys")
        self.database_url = database_url
        self.slack = slack
        self.pd = pd
        self.token = ""

    def config(self, port: int) -> Path:
        path = self.root / f"signoff-{port}.yaml"
        path.write_text(
            textwrap.dedent(
                f"""\
                server: {{host: 127.0.0.1, port: {port}, public_url: "http://127.0.0.1:{port}"}}
                database: {{url: "{self.database_url}"}}
                keys: {{dir: ./keys}}
                policy: {{paths: [./policies], watch: false}}
                {"log: {publish_file: ./checkpoints/latest}" if self.publish_file else ""}
                slack:
                  bot_token: {self.slack.token}
                  signing_secret: {SIGNING_SECRET}
                  api_base_url: {self.slack.base_url}
                  escalation_channel: C0ESCALATE
                pagerduty:
                  routing_key: {ROUTING_KEY}
                  events_url: {self.pd.url}
                console: {{enabled: {"true" if self.console else "false"}}}
                """
            )
            + self.extra_config,
            encoding="utf-8",
        )
        return path

    async def run(self, *args: str, stdin: bytes = b"", check: bool = True) -> tuple[int, str]:
        """``signoff --config … ARGS`` on this home: (exit status, standard output); with
        ``check`` a non-zero status fails with what the command wrote to standard error."""
        proc = await asyncio.create_subprocess_exec(
            SIGNOFF,
            "--config",
            str(self.config(free_port())),
            *args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=clean_env(),
            cwd=self.root,
        )
        out, err = await proc.communicate(stdin)
        code = proc.returncode
        assert code is not None
        if check and code != 0:
            raise AssertionError(f"signoff {' '.join(args)} exited {code}:\n{err.decode()}")
        return code, out.decode() + (err.decode() if code else "")

    async def cli(self, *args: str, stdin: bytes = b"") -> str:
        """``signoff --config … ARGS`` on this home; its standard output."""
        return (await self.run(*args, stdin=stdin))[1]

    async def add_agent(self) -> None:
        self.token = (await self.cli("agents", "add", "e2e-agent", "--quiet")).strip()


def clean_env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TEAMS_", "PAGERDUTY_"))
    }


class ServedHome(Protocol):
    """What a ``Server`` needs of its home (the e2e ``Home`` here, the chaos rig's)."""

    root: Path
    token: str
    slack: FakeSlack

    def config(self, port: int) -> Path: ...


class Server:
    """One ``signoff serve`` process of a home, on its own port (kept across restarts)."""

    def __init__(self, home: ServedHome) -> None:
        self.home = home
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = home.root / f"serve-{self.port}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def up(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, http: aiohttp.ClientSession, timeout: float = 60) -> None:
        """Start the process and wait until it is ready (``/readyz``: its store answers)."""
        config = self.home.config(self.port)
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                SIGNOFF,
                "--config",
                str(config),
                "serve",
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                cwd=self.home.root,
            )
        self.starts += 1
        async with asyncio.timeout(timeout):
            while True:
                if self.proc.returncode is not None:
                    raise AssertionError(f"signoff serve exited early:\n{self.tail()}")
                try:
                    async with http.get(self.base + "/readyz") as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.05)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    async def kill9(self) -> None:
        """SIGKILL, the crash under test, and reap the process."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(20):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    async def submit(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        body = {
            "tool": "payments.transfer",
            "arguments": {"amount": 25000, "to": "acct-123"},
            "justification": "Refund for order 8812",
        }
        async with http.post(self.base + "/v1/requests", json=body, headers=self.auth) as resp:
            assert resp.status == 201, await resp.text()
            created: dict[str, Any] = await resp.json()
        assert created["status"] == "pending"
        return created

    async def wait_final(self, http: aiohttp.ClientSession, request_id: str) -> dict[str, Any]:
        async with asyncio.timeout(30):
            while True:
                url = f"{self.base}/v1/requests/{request_id}?wait=20"
                async with http.get(url, headers=self.auth) as resp:
                    assert resp.status == 200
                    body: dict[str, Any] = await resp.json()
                if body["status"] != "pending":
                    return body

    async def statements(self, http: aiohttp.ClientSession, rid: str) -> list[dict[str, Any]]:
        """The request's attestation predicates, oldest first (waits for the checkpoint to
        cover the last one)."""
        async with asyncio.timeout(10):
            while True:
                url = f"{self.base}/v1/requests/{rid}/attestations"
                async with http.get(url, headers=self.auth) as resp:
                    bundle = await resp.json()
                found = [
                    json.loads(base64.b64decode(e["envelope"]["payload"]))["predicate"]
                    for e in bundle["entries"]
                ]
                if found and found[-1]["final"]:
                    return found
                await asyncio.sleep(0.2)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.home.token}"}


@pytest_asyncio.fixture
async def fakes() -> AsyncIterator[tuple[FakeSlack, FakePagerDuty]]:
    slack, pd = FakeSlack(), FakePagerDuty()
    await slack.start()
    await pd.start()
    try:
        yield slack, pd
    finally:
        await slack.close()
        await pd.close()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=40)) as session:
        yield session


@pytest.fixture
def pg_database() -> Iterator[str]:
    with fresh_database(admin_url(), "signoff_e2e") as url:
        yield url


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_ladder(statements: list[dict[str, Any]], *, late: float) -> None:
    """One ``escalated`` attestation per step, in order, then one ``expired``, each no more
    than ``late`` seconds after its offset."""
    assert [s["decision"] for s in statements] == ["escalated", "escalated", "expired"]
    assert [s["detail"]["step"] for s in statements[:2]] == [0, 1]
    created = parse_time(statements[0]["request"]["created_at"])
    for statement, offset in zip(statements, STEPS, strict=True):
        took = (parse_time(statement["timestamps"]["at"]) - created).total_seconds()
        assert offset <= took <= offset + late, (statement["decision"], took)
