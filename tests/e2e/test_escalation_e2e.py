"""Escalation end to end: real ``signoff serve`` processes, a local fake Slack Web API and a
fake PagerDuty Events API, and a rule that reminds at 2 s, escalates to a second group and
pages at 4 s, and denies at 6 s (SPEC §5, §8 Escalation).

Checked: the reminder in the card's thread, the card for the second group, the ``<!here>``
page and the PagerDuty trigger/resolve, ``expired`` for the agent's long-poll, exactly one
``escalated`` attestation per step and one ``expired`` — also across a ``kill -9`` and a
restart, and with two processes sharing one PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
import pytest_asyncio
from psycopg import sql

from bench.fakes.slack_api import FakeSlack
from bench.serving import libpq, with_database
from bot.evidence.keys import KeyRing
from tests.fakes.pagerduty import FakePagerDuty
from tests.pg_cluster import admin_url

pytestmark = pytest.mark.slow

SIGNOFF = str(Path(sys.executable).with_name("signoff"))
SIGNING_SECRET = "e2e-signing-secret"
ROUTING_KEY = "E2EROUTINGKEY0123456789ABCDEFGHI"

POLICY = """\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {name: escalation-e2e, version: "e2e-1"}
groups:
  finance:
    slack: {channel: C0FINANCE, users: [U0ALICE]}
  finance-leads:
    slack: {channel: C0LEADS, users: [U0CAROL]}
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
      - {after: 4s, to: finance-leads, page: true}
      - {after: 6s, action: deny}
"""
STEPS = (2.0, 4.0, 6.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Home:
    """A signoff home: config, key, policy, database; one agent token."""

    def __init__(self, root: Path, database_url: str, slack: FakeSlack, pd: FakePagerDuty):
        self.root = root
        (root / "policies").mkdir(parents=True, exist_ok=True)
        (root / "policies" / "policy.yaml").write_text(POLICY, encoding="utf-8")
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
                slack:
                  bot_token: {self.slack.token}
                  signing_secret: {SIGNING_SECRET}
                  api_base_url: {self.slack.base_url}
                  escalation_channel: C0ESCALATE
                pagerduty:
                  routing_key: {ROUTING_KEY}
                  events_url: {self.pd.url}
                console: {{enabled: false}}
                """
            ),
            encoding="utf-8",
        )
        return path

    async def add_agent(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            SIGNOFF,
            "--config",
            str(self.config(free_port())),
            "agents",
            "add",
            "e2e-agent",
            "--quiet",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=clean_env(),
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        self.token = out.decode().strip()


def clean_env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TEAMS_", "PAGERDUTY_"))
    }


class Server:
    """One ``signoff serve`` process."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = home.root / f"serve-{self.port}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, http: aiohttp.ClientSession) -> None:
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
            )
        async with asyncio.timeout(30):
            while True:
                if self.proc.returncode is not None:
                    pytest.fail(f"signoff serve exited early:\n{self.log.read_text()}")
                try:
                    async with http.get(self.base + "/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(15):
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
    name = f"signoff_e2e_{os.getpid()}_{secrets.token_hex(4)}"
    admin = admin_url()
    with psycopg.connect(libpq(admin), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(admin, name)
    finally:
        with psycopg.connect(libpq(admin), autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def assert_ladder(statements: list[dict[str, Any]], *, late: float) -> None:
    """One ``escalated`` attestation per step, in order, then one ``expired``, each no more
    than ``late`` seconds after its offset."""
    assert [s["decision"] for s in statements] == ["escalated", "escalated", "expired"]
    assert [s["detail"]["step"] for s in statements[:2]] == [0, 1]
    created = parse_time(statements[0]["request"]["created_at"])
    for statement, offset in zip(statements, STEPS, strict=True):
        took = (parse_time(statement["timestamps"]["at"]) - created).total_seconds()
        assert offset <= took <= offset + late, (statement["decision"], took)


async def assert_chat_and_pages(slack: FakeSlack, pd: FakePagerDuty, request_id: str) -> None:
    [card] = slack.cards("C0FINANCE")
    assert request_id in json.dumps(card.blocks) or request_id in card.text
    replies = slack.replies("C0FINANCE", card.ts)
    reminders = [m for m in replies if "Reminder" in m.text]
    assert len(reminders) == 1, [m.text for m in replies]
    assert "<@U0ALICE>" in reminders[0].text  # mentions the group's approvers
    assert len(slack.cards("C0LEADS")) == 1
    pages = slack.cards("C0ESCALATE")
    assert len(pages) == 1 and "<!here>" in pages[0].text
    key = "signoff-" + request_id
    await pd.wait_for(lambda: pd.incidents.get(key) == "resolved", timeout=10)
    assert [e["dedup_key"] for e in pd.accepted("trigger")] == [key]
    assert [e["dedup_key"] for e in pd.accepted("resolve")] == [key]
    # the cards were updated when the request expired (buttons gone)
    await slack.wait_for(lambda: card.edits > 0, timeout=10)


async def test_remind_escalate_page_and_deny_on_time(
    tmp_path: Path, fakes: tuple[FakeSlack, FakePagerDuty], http: aiohttp.ClientSession
) -> None:
    slack, pd = fakes
    home = Home(tmp_path, f"sqlite:///{tmp_path / 'signoff.db'}", slack, pd)
    await home.add_agent()
    server = Server(home)
    await server.start(http)
    try:
        created = await server.submit(http)
        started = time.monotonic()
        final = await server.wait_final(http, created["id"])
        assert final["status"] == "expired" and final["grant"] is None
        assert 5.0 <= time.monotonic() - started <= 9.0
        statements = await server.statements(http, created["id"])
        assert_ladder(statements, late=1.0)
        await assert_chat_and_pages(slack, pd, created["id"])
    finally:
        await server.stop()


async def test_kill_9_between_steps_and_restart_repeats_no_step(
    tmp_path: Path, fakes: tuple[FakeSlack, FakePagerDuty], http: aiohttp.ClientSession
) -> None:
    slack, pd = fakes
    home = Home(tmp_path, f"sqlite:///{tmp_path / 'signoff.db'}", slack, pd)
    await home.add_agent()
    first = Server(home)
    await first.start(http)
    try:
        created = await first.submit(http)
        submitted = time.monotonic()
        [card] = await slack.wait_for(lambda: slack.cards("C0FINANCE"), timeout=5)
        # the reminder (2 s) has been posted: kill the server before the 4 s step
        await slack.wait_for(lambda: slack.replies("C0FINANCE", card.ts), timeout=5)
        first.kill9()
        await first.proc.wait()  # type: ignore[union-attr]
        # stay down past the 4 s step, so it is due while signoff is down
        await asyncio.sleep(max(0.0, 4.3 - (time.monotonic() - submitted)))
    finally:
        await first.stop()
    second = Server(home)
    await second.start(http)
    # seconds after the submit at which the second process answered: a cold start (no
    # bytecode cache yet, a loaded CI machine) can take longer than the gap to the deny
    up = time.monotonic() - submitted
    try:
        final = await second.wait_final(http, created["id"])
        assert final["status"] == "expired"
        statements = await second.statements(http, created["id"])
        assert [s["decision"] for s in statements] == ["escalated", "escalated", "expired"]
        created_at = parse_time(statements[0]["request"]["created_at"])
        at = [(parse_time(s["timestamps"]["at"]) - created_at).total_seconds() for s in statements]
        assert 2.0 <= at[0] <= 3.0
        # the 4 s step fell due while signoff was down: it ran at once when it came back
        assert 4.0 <= at[1] <= max(4.3, up) + 1.5, (at, up)
        # the deny is on time, or at once if the restart itself outlasted the deadline
        assert 6.0 <= at[2] <= max(6.0, up) + 1.5, (at, up)
        assert at[1] <= at[2]
        await assert_chat_and_pages(slack, pd, created["id"])
    finally:
        await second.stop()


@pytest.mark.postgres
async def test_two_processes_on_one_postgresql_fire_each_step_once(
    tmp_path: Path,
    fakes: tuple[FakeSlack, FakePagerDuty],
    http: aiohttp.ClientSession,
    pg_database: str,
) -> None:
    slack, pd = fakes
    home = Home(tmp_path, pg_database, slack, pd)
    await home.add_agent()
    one, two = Server(home), Server(home)
    await asyncio.gather(one.start(http), two.start(http))
    try:
        # both processes hold a timer for the request; each step is claimed once
        created = await one.submit(http)
        final = await two.wait_final(http, created["id"])
        assert final["status"] == "expired"
        assert_ladder(await two.statements(http, created["id"]), late=1.5)
        await assert_chat_and_pages(slack, pd, created["id"])

        # a request created by a process that dies at once is picked up by the other one
        # (its sweep) and still follows the whole ladder on time
        orphan = await one.submit(http)
        one.kill9()
        final = await two.wait_final(http, orphan["id"])
        assert final["status"] == "expired"
        assert_ladder(await two.statements(http, orphan["id"]), late=1.5)
        assert len(pd.accepted("trigger")) == 2
    finally:
        await asyncio.gather(one.stop(), two.stop())
