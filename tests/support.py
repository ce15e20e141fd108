"""Test support: wait on a condition, end a PostgreSQL backend as a restart does, and build
a `Gate` on the escalation policy for the step-machine tests. Writing a signoff home
(``write_home``, ``POLICY``) is shared with the benchmarks and lives in
``bench/serving.py``; it is re-exported here for the tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from aiohttp import web
from aiohttp.test_utils import TestClient

from bench.serving import POLICY, libpq, write_home
from bot.evidence.keys import KeyRing
from bot.fanout import Fanout
from bot.policy.holder import PolicyHolder
from bot.ports import Clock
from bot.service import Gate
from bot.store import SqlStore

#: the client ``pytest-aiohttp``'s ``aiohttp_client`` fixture returns for an application
AppClient = TestClient[web.Request, web.Application]

__all__ = [
    "ESCALATION_POLICY",
    "POLICY",
    "AppClient",
    "make_gate",
    "terminate_and_wait",
    "until",
    "write_home",
]


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


def terminate_and_wait(pg_url: str, pid: int) -> None:
    """End PostgreSQL backend ``pid`` as a restart does (a FATAL error, then the socket's
    end) and wait until it is gone, so its client has been told before its next use."""
    with psycopg.connect(libpq(pg_url), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        for _ in range(500):
            if admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
                time.sleep(0.01)
            else:
                return
    raise AssertionError(f"backend {pid} did not exit")


async def make_gate(
    tmp_path: Path, clock: Clock, store: SqlStore | None = None, fanout: Fanout | None = None
) -> Gate:
    """A ``Gate`` on ``ESCALATION_POLICY`` and a SQLite file in ``tmp_path`` (keys and
    policy file made once, so a second call is another process on the same home)."""
    policy = tmp_path / "policy.yaml"
    if not policy.exists():
        policy.write_text(ESCALATION_POLICY, encoding="utf-8")
    keys_dir = tmp_path / "keys"
    keys = KeyRing.load(keys_dir) if keys_dir.exists() else KeyRing.create(keys_dir)
    store = store or await SqlStore.open(f"sqlite:///{tmp_path / 'signoff.db'}", clock=clock)
    return Gate(store=store, policies=PolicyHolder([policy]), keys=keys, clock=clock, fanout=fanout)
