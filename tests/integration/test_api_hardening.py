"""Low-severity findings of the security review, driven over real HTTP: duplicate JSON keys,
the database file's permissions, and what 503 answers reveal."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from adapters.main import build
from adapters.runtime import Runtime
from bot.settings import load_settings
from tests.support import write_home

DUPLICATES = [
    b'{"tool": "crm.read", "tool": "payments.transfer", "arguments": {}}',
    b'{"tool": "payments.transfer", "arguments": {"amount": 1, "amount": 25000}}',
    b'{"tool": "x.y", "arguments": {"a": [{"b": 1, "b": 2}]}}',
]


@pytest.mark.parametrize("raw", DUPLICATES)
async def test_duplicate_object_keys_are_a_400(
    runtime: Runtime, aiohttp_client: AiohttpClient, raw: bytes
) -> None:
    client = await aiohttp_client(runtime.app)
    _, token = await runtime.gate.register_agent("agent")
    resp = await client.post(
        "/v1/requests",
        data=raw,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert resp.status == 400
    problem = await resp.json()
    assert "duplicate object key" in problem["detail"]
    assert await runtime.store.log_size() == 0


async def test_duplicate_keys_in_an_execution_report_are_a_400(
    runtime: Runtime, aiohttp_client: AiohttpClient
) -> None:
    client = await aiohttp_client(runtime.app)
    _, token = await runtime.gate.register_agent("agent")
    auth = {"Authorization": f"Bearer {token}"}
    made = await (
        await client.post("/v1/requests", json={"tool": "crm.read", "arguments": {}}, headers=auth)
    ).json()
    raw = b'{"grant": "%s", "outcome": "started", "outcome": "failed"}' % made["grant"].encode()
    resp = await client.post(
        f"/v1/requests/{made['id']}/execution",
        data=raw,
        headers={**auth, "Content-Type": "application/json"},
    )
    assert resp.status == 400 and "duplicate object key" in (await resp.json())["detail"]


async def test_sqlite_database_is_created_owner_only(tmp_path: Path) -> None:
    rt = await build(load_settings(write_home(tmp_path)), adapters=False)
    try:
        await rt.gate.register_agent("agent")  # a write: the WAL file exists too
        for name in ("signoff.db", "signoff.db-wal"):
            mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
            assert mode == 0o600, (name, oct(mode))
    finally:
        await rt.store.close()
