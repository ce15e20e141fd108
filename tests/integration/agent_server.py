"""A real signoff server (adapters.main.build + the callbacks adapter) on an ephemeral
loopback port, run on its own event loop in a thread, so synchronous agent code, framework
runners and async tests can all talk to it over HTTP. Humans decide through the core
(``gate.decide`` with an ``Approver`` and memberships), like a chat adapter would."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from adapters.callbacks import CallbackSender
from adapters.callbacks import mount as mount_callbacks
from adapters.main import build
from adapters.runtime import Runtime
from bot.domain import Approver, Platform, Request, Status, Verdict
from bot.edits import Proposal
from bot.settings import load_settings
from tests.support import write_home

T = TypeVar("T")

ALICE = Approver(Platform.CONSOLE, "console", "alice", "Alice", via="console_login")

POLICY = """\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {name: agents, version: "a1"}
groups:
  finance:
    console: {users: [alice]}
defaults:
  unknown_tool: confirm
  sla: 15m
  approvers: {groups: [finance]}
rules:
  - name: lookups
    tool: "lookup_*"
    tier: auto
  - name: large-transfer
    tool: transfer_money
    when: args.amount >= 1000
    tier: confirm
    editable: true
    approvers: {groups: [finance]}
  - name: small-transfer
    tool: transfer_money
    tier: auto
  - name: no-repo-deletes
    tool: delete_repo
    tier: block
    reason: repositories are never deleted by agents
"""


class LiveServer:
    """The running server; ``run`` executes a coroutine on its loop from any thread."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runtime: Runtime = self.run(self._start())
        self.url = f"http://127.0.0.1:{self.port}"
        self.decided: set[str] = set()

    async def _start(self) -> Runtime:
        runtime = await build(
            load_settings(self.home / "signoff.yaml"), adapters=False, mounts=[mount_callbacks]
        )
        self.callbacks = runtime.part(CallbackSender)
        self.runner = web.AppRunner(runtime.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        return runtime

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def register(self, name: str = "billing-agent") -> str:
        _, token = self.run(self.runtime.gate.register_agent(name))
        return token

    def pending(self) -> list[Request]:
        return list(self.run(self.runtime.store.list_requests(status=Status.PENDING)))

    def next_pending(self, timeout: float = 20) -> Request:
        """Wait (polling the store) for a pending request not handled yet."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for request in self.pending():
                if request.id not in self.decided:
                    self.decided.add(request.id)
                    return request
            time.sleep(0.02)
        raise AssertionError("no pending request appeared")

    def decide(self, request_id: str, verdict: Verdict, reason: str = "") -> Request:
        return self.run(
            self.runtime.gate.decide(request_id, ALICE, verdict, reason, memberships={"finance"})
        )

    def approve(self, request_id: str) -> Request:
        return self.decide(request_id, Verdict.APPROVE, "looks right")

    def approve_edited(self, request_id: str, arguments: dict[str, Any]) -> Request:
        """Approve with the arguments changed (rule option ``editable``), as an approver
        editing in the console or a chat editor does: the grant binds ``arguments``."""
        request = self.outcome(request_id)
        edit = Proposal(request.call.tool, arguments)
        return self.run(
            self.runtime.gate.decide(
                request_id,
                ALICE,
                Verdict.APPROVE,
                "approved with a smaller amount",
                memberships={"finance"},
                edit=edit,
            )
        )

    def deny(self, request_id: str, reason: str) -> Request:
        return self.decide(request_id, Verdict.DENY, reason)

    def in_background(
        self, action: Callable[[Request], Any], *, before: Callable[[Request], Any] | None = None
    ) -> Future[Request]:
        """In a thread: wait for the next pending request, run ``before`` (e.g. tamper), then
        ``action`` (e.g. approve); the future holds the request."""
        future: Future[Request] = Future()

        def work() -> None:
            try:
                request = self.next_pending()
                if before is not None:
                    before(request)
                action(request)
                future.set_result(request)
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=work, daemon=True).start()
        return future

    def outcome(self, request_id: str) -> Request:
        return self.run(self.runtime.gate.get(request_id))

    def close(self) -> None:
        async def stop() -> None:
            await self.runner.cleanup()
            await self.runtime.gate.drain()
            await self.runtime.store.close()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """Body of each test module's ``live`` fixture (``yield from live_server(tmp_path)``)."""
    # The test's callback receiver listens on loopback.
    write_home(tmp_path, policy=POLICY, extra="callbacks: {allow_private_networks: true}\n")
    server = LiveServer(tmp_path)
    try:
        yield server
    finally:
        server.close()
