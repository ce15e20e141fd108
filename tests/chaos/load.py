"""The mixed load the chaos harness drives, and its ledger of what the API acknowledged.

Agents submit auto reads (executed with their grant at once; each names a ``callback_url``),
blocked force-pushes, refunds
that wait for a human and transfers whose short SLA escalates them (remind, page, deny).
Approvers decide refunds in the console (approve or deny) and by clicking Slack cards; the
agent cancels some refunds and executes the approved ones, sometimes twice at once.

Everything is recorded as *tried* before it is sent and as *acknowledged* only when the API
answered success; a connection cut by a kill is tried but not acknowledged. The checks
(``tests.chaos.check``) hold the server to what it acknowledged and to nothing more.
"""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.fakes.slack_payloads import block_actions, form, sign
from tests.chaos.rig import PASSWORD, SIGNING_SECRET
from tests.e2e.serving import Server

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ERRORS = (aiohttp.ClientError, TimeoutError, ValueError)

BODIES: dict[str, dict[str, Any]] = {
    "auto": {"tool": "files.read", "arguments": {"path": "/srv/a"}, "justification": "chaos"},
    "block": {"tool": "repos.force_push", "arguments": {"branch": "main"}, "justification": "x"},
    "refund": {"tool": "payments.refund", "arguments": {"amount": 10}, "justification": "chaos"},
    "transfer": {
        "tool": "payments.transfer",
        "arguments": {"amount": 25000, "to": "acct-1"},
        "justification": "chaos",
    },
}


@dataclass
class Entry:
    """One acknowledged request and what was tried and acknowledged on it."""

    id: str
    kind: str
    grant: str | None = None
    approve_tried: bool = False
    deny_tried: bool = False
    cancel_tried: bool = False
    approve_acked: bool = False
    deny_acked: bool = False
    cancel_acked: bool = False
    execute_tried: bool = False
    started_acked: int = 0  # 200s to ``outcome: started`` with this request's grant
    busy: bool = False  # an operation holds it (each decision is tried on a request once)
    callback: bool = False  # submitted with a callback_url: owes one callback


@dataclass
class Ledger:
    entries: dict[str, Entry] = field(default_factory=dict)
    submits_tried: int = 0
    answers: dict[str, int] = field(default_factory=dict)  # "submit 201", "decide 503", …

    def count(self, op: str, status: int | str) -> None:
        key = f"{op} {status}"
        self.answers[key] = self.answers.get(key, 0) + 1

    def pick(self, kind: str, **want: bool) -> Entry | None:
        found = [
            e
            for e in self.entries.values()
            if e.kind == kind and not e.busy and all(getattr(e, k) == v for k, v in want.items())
        ]
        if not found:
            return None
        entry = random.choice(found)
        entry.busy = True
        return entry


class Console:
    """Alice's console session (a database row: it outlives the processes)."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.cookie: str | None = None
        self.csrf: str | None = None
        self._login = asyncio.Lock()

    async def session(self, server: Server, request_id: str) -> tuple[str, str]:
        async with self._login:
            if self.cookie is None:
                self.cookie = await self._log_in(server)
                self.csrf = None
            if self.csrf is None:
                url = f"{server.base}/console/requests/{request_id}"
                async with self.http.get(url, headers=self._headers) as page:
                    found = CSRF.search(await page.text())
                if found is None:
                    self.cookie = None  # the session is gone: log in again next time
                    raise ValueError("no CSRF token on the detail page")
                self.csrf = found.group(1)
            return self.cookie, self.csrf

    @property
    def _headers(self) -> dict[str, str]:
        return {"Cookie": f"signoff_session={self.cookie}"}

    async def _log_in(self, server: Server) -> str:
        async with self.http.get(f"{server.base}/console/login") as page:
            token = CSRF.search(await page.text())
            if token is None or "signoff_login" not in page.cookies:
                raise ValueError(f"login page answered {page.status}")
            cookie = page.cookies["signoff_login"].value
        async with self.http.post(
            f"{server.base}/console/login",
            data={"csrf_token": token.group(1), "username": "alice", "password": PASSWORD},
            headers={"Cookie": f"signoff_login={cookie}"},
            allow_redirects=False,
        ) as login:
            if login.status != 303 or "signoff_session" not in login.cookies:
                raise ValueError(f"login answered {login.status}")
            return login.cookies["signoff_session"].value

    async def decide(self, server: Server, request_id: str, verdict: str) -> int | str:
        """POST the verdict; the status, ``"done"`` for the 303 that means recorded."""
        cookie, csrf = await self.session(server, request_id)
        async with self.http.post(
            f"{server.base}/console/requests/{request_id}/decide",
            data={"csrf_token": csrf, "verdict": verdict, "reason": "chaos"},
            headers={"Cookie": f"signoff_session={cookie}"},
            allow_redirects=False,
        ) as resp:
            location = resp.headers.get("Location", "")
            if resp.status == 303 and "done=" in location:
                return "done"
            if resp.status in (303, 403):
                self.cookie = None  # sent to the login page: the session is gone
            return resp.status


class Load:
    """``workers`` concurrent loops of random operations against random live servers."""

    def __init__(
        self,
        servers: list[Server],
        http: aiohttp.ClientSession,
        ledger: Ledger,
        seed: int,
        *,
        callback_url: str | None = None,
    ) -> None:
        self.servers = servers
        self.callback_url = callback_url
        self.http = http
        self.ledger = ledger
        self.console = Console(http)
        self.random = random.Random(seed)
        self.stopping = asyncio.Event()
        self.ops = [
            (self.submit_auto, 3),
            (self.submit_block, 1),
            (self.submit_refund, 3),
            (self.submit_transfer, 1),
            (self.console_decide, 2),
            (self.slack_approve, 1),
            (self.cancel, 1),
            (self.execute, 2),
        ]

    def server(self) -> Server:
        live = [s for s in self.servers if s.up] or self.servers
        return self.random.choice(live)

    async def run(self, workers: int) -> None:
        await asyncio.gather(*(self._worker() for _ in range(workers)))

    async def _worker(self) -> None:
        funcs = [f for f, _ in self.ops]
        weights = [w for _, w in self.ops]
        while not self.stopping.is_set():
            op = self.random.choices(funcs, weights)[0]
            try:
                await op()
            except ERRORS as exc:
                self.ledger.count(op.__name__, type(exc).__name__)
                await asyncio.sleep(0.1)  # the server is down: do not spin until it is back
            await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ agent

    async def _submit(self, kind: str) -> Entry | None:
        server = self.server()
        self.ledger.submits_tried += 1
        sent = BODIES[kind]
        if kind == "auto" and self.callback_url:
            sent = {**sent, "callback_url": self.callback_url}
        async with self.http.post(
            f"{server.base}/v1/requests", json=sent, headers=server.auth
        ) as resp:
            self.ledger.count("submit", resp.status)
            if resp.status != 201:
                return None
            body = await resp.json()
        entry = Entry(body["id"], kind, grant=body.get("grant"), callback="callback_url" in sent)
        self.ledger.entries[entry.id] = entry
        return entry

    async def submit_auto(self) -> None:
        entry = await self._submit("auto")
        if entry is not None and self.random.random() < 0.5:
            entry.busy = True
            try:
                await self._execute(entry, twice=self.random.random() < 0.3)
            finally:
                entry.busy = False

    async def submit_block(self) -> None:
        await self._submit("block")

    async def submit_refund(self) -> None:
        await self._submit("refund")

    async def submit_transfer(self) -> None:
        await self._submit("transfer")

    async def cancel(self) -> None:
        entry = self.ledger.pick(
            "refund", approve_tried=False, deny_tried=False, cancel_tried=False
        )
        if entry is None:
            return
        try:
            entry.cancel_tried = True
            server = self.server()
            url = f"{server.base}/v1/requests/{entry.id}/cancel"
            async with self.http.post(url, json={}, headers=server.auth) as resp:
                self.ledger.count("cancel", resp.status)
                entry.cancel_acked = resp.status == 200
        finally:
            entry.busy = False

    async def execute(self) -> None:
        entry = self.ledger.pick("refund", approve_tried=True, execute_tried=False)
        if entry is None:
            return
        try:
            if entry.grant is None:
                server = self.server()
                url = f"{server.base}/v1/requests/{entry.id}"
                async with self.http.get(url, headers=server.auth) as resp:
                    body = await resp.json()
                if body.get("status") != "approved":
                    return
                entry.grant = body["grant"]
            await self._execute(entry, twice=self.random.random() < 0.3)
        finally:
            entry.busy = False

    async def _execute(self, entry: Entry, *, twice: bool) -> None:
        """``started`` (twice at once when ``twice``), then ``succeeded``."""
        entry.execute_tried = True
        starts = await asyncio.gather(
            *(self.post_outcome(entry, "started") for _ in range(2 if twice else 1)),
            return_exceptions=True,
        )
        if 200 in starts:
            await self.post_outcome(entry, "succeeded")

    async def post_outcome(self, entry: Entry, outcome: str) -> int:
        server = self.server()
        body = {"grant": entry.grant, "outcome": outcome}
        url = f"{server.base}/v1/requests/{entry.id}/execution"
        async with self.http.post(url, json=body, headers=server.auth) as resp:
            self.ledger.count(f"execution {outcome}", resp.status)
            if outcome == "started" and resp.status == 200:
                entry.started_acked += 1
            return resp.status

    # ------------------------------------------------------------------ approvers

    async def console_decide(self) -> None:
        entry = self.ledger.pick(
            "refund", approve_tried=False, deny_tried=False, cancel_tried=False
        )
        if entry is None:
            return
        try:
            verdict = "approve" if self.random.random() < 0.7 else "deny"
            setattr(entry, f"{verdict}_tried", True)
            answer = await self.console.decide(self.server(), entry.id, verdict)
            self.ledger.count("console", answer)
            if answer == "done":
                setattr(entry, f"{verdict}_acked", True)
        finally:
            entry.busy = False

    async def slack_approve(self) -> None:
        slack = self.servers[0].home.slack
        entry = self.ledger.pick(
            "refund", approve_tried=False, deny_tried=False, cancel_tried=False
        )
        if entry is None:
            return
        try:
            cards = [m for m in slack.cards("C0FINANCE") if entry.id in str(m.blocks)]
            if not cards:
                return
            entry.approve_tried = True
            server = self.server()
            payload = block_actions(
                "signoff_approve", entry.id, user="U0ALICE", message_ts=cards[0].ts
            )
            data = form(payload)
            async with self.http.post(
                f"{server.base}/slack/events", data=data, headers=sign(SIGNING_SECRET, data)
            ) as resp:
                # Slack's ack comes before the work: a 200 is a click, not a decision
                self.ledger.count("slack", resp.status)
        finally:
            entry.busy = False
