"""``signoff keys revoke KID --since T`` (SPEC §3): signatures by KID dated after T stop
verifying in ``audit verify``; grants by KID are refused. Real CLI processes and real HTTP."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pytest_aiohttp import AiohttpClient

from adapters.main import build
from bot.domain import ToolCall
from bot.evidence.keys import KeyRing, PublicKeys
from bot.service import Submission
from bot.settings import load_settings
from tests.support import write_home

SIGNOFF = str(Path(sys.executable).with_name("signoff"))


def signoff(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIGNOFF, "--config", str(config), *args], capture_output=True, text=True, timeout=120
    )


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def test_revoked_key_signatures_after_since_fail_audit_verify(tmp_path: Path) -> None:
    config = write_home(tmp_path)
    before = datetime.now(UTC) - timedelta(seconds=5)
    rt = await build(load_settings(config), adapters=False)
    old_kid = rt.keys.kid
    try:
        agent, _ = await rt.gate.register_agent("agent")
        for i in range(3):
            await rt.gate.submit(agent, Submission(ToolCall("crm.read", {"i": i})))
    finally:
        await rt.store.close()
    after = datetime.now(UTC) + timedelta(seconds=5)
    assert signoff(config, "audit", "verify").returncode == 0

    refused = signoff(config, "keys", "revoke", old_kid, "--since", iso(before))
    assert refused.returncode != 0 and "current signing key" in refused.stderr
    assert signoff(config, "keys", "rotate").returncode == 0
    done = signoff(config, "keys", "revoke", old_kid, "--since", iso(before))
    assert done.returncode == 0, done.stderr
    failed = signoff(config, "audit", "verify")
    assert failed.returncode != 0
    assert failed.stderr.startswith("signoff: error: log entry 0: signed by revoked key")
    # Revoked only from after the entries were signed: they verify again.
    assert signoff(config, "keys", "revoke", old_kid, "--since", iso(after)).returncode == 0
    assert signoff(config, "audit", "verify").returncode == 0
    # Offline verifiers learn the revocation from the JWKS.
    ring = KeyRing.load(tmp_path / "keys")
    assert PublicKeys.from_jwks(ring.jwks()).revoked[old_kid] > before
    assert signoff(config, "keys", "revoke", "nope", "--since", iso(after)).returncode != 0
    assert signoff(config, "keys", "revoke", old_kid, "--since", "yesterday").returncode != 0


async def test_grants_by_a_revoked_key_are_refused(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    config = write_home(tmp_path)
    rt = await build(load_settings(config), adapters=False)
    try:
        client = await aiohttp_client(rt.app)
        _, token = await rt.gate.register_agent("agent")
        auth = {"Authorization": f"Bearer {token}"}
        made = await (
            await client.post(
                "/v1/requests", json={"tool": "crm.read", "arguments": {}}, headers=auth
            )
        ).json()
        old_kid = rt.keys.kid
        rt.keys.rotate()
        rt.keys.revoke(old_kid, datetime.now(UTC) + timedelta(hours=1))  # even a future T
        resp = await client.post(
            f"/v1/requests/{made['id']}/execution",
            json={"grant": made["grant"], "outcome": "started"},
            headers=auth,
        )
        assert resp.status == 403
        assert "revoked" in (await resp.json())["detail"]
        request = await rt.gate.get(made["id"])
        assert request.outcome is None  # the grant was not consumed
    finally:
        await rt.store.close()
