"""Signed policy bundles end to end: `signoff policy sign`, `serve` refusing unsigned, altered
or untrusted bundles when `policy.trusted_keys` is set, reloads keeping the previous policy
(WARNING + metric), and the signer's key id in every attestation."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from adapters.cli import main as cli
from adapters.main import build
from adapters.runtime import Runtime
from bot.domain import ToolCall
from bot.errors import ConfigError, EvidenceError
from bot.evidence.keys import KeyRing
from bot.service import Submission
from bot.settings import load_settings
from tests.support import write_home

ROOT = Path(__file__).resolve().parents[2]
TRUST = "policy: {paths: [./policies], watch: false, trusted_keys: [./trusted.jwks.json]}\n"


def home_with_trust(tmp_path: Path) -> tuple[Path, KeyRing]:
    config = write_home(tmp_path)
    text = config.read_text().replace("policy: {paths: [./policies], watch: false}\n", TRUST)
    config.write_text(text)
    ring = KeyRing.load(tmp_path / "keys")
    (tmp_path / "trusted.jwks.json").write_text(json.dumps(ring.public().jwks()))
    return config, ring


def sign(tmp_path: Path, ring: KeyRing, capsys: pytest.CaptureFixture[str]) -> str:
    key = tmp_path / "keys" / f"{ring.kid}.key"
    assert cli(["policy", "sign", str(tmp_path / "policies"), "--key", str(key)]) == 0
    return capsys.readouterr().out


def change_policy(tmp_path: Path) -> None:
    path = tmp_path / "policies" / "policy.yaml"
    path.write_text(
        path.read_text().replace(
            "tier: auto", "tier: notify\n    approvers: {groups: [finance]}", 1
        )
    )


async def test_a_signed_bundle_loads_and_attestations_name_its_signer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, ring = home_with_trust(tmp_path)
    out = sign(tmp_path, ring, capsys)
    assert f"with {ring.kid} -> {tmp_path / 'policies' / 'policy.sig.json'}" in out
    runtime = await build(load_settings(config), adapters=False)
    try:
        assert runtime.policies.current.signer == ring.kid
        agent, _ = await runtime.gate.register_agent("a")
        request, _ = await runtime.gate.submit(agent, Submission(ToolCall("crm.read", {})))
        assert request.policy.signer == ring.kid
        stored = await runtime.store.get_request(request.id)
        assert stored is not None and stored.policy.signer == ring.kid
        (entry,) = await runtime.store.log_entries_for(request.id)
        payload = json.loads(base64.b64decode(json.loads(entry.envelope)["payload"]))
        assert payload["predicate"]["policy"]["signer"] == ring.kid
    finally:
        await runtime.store.close()


@pytest.mark.parametrize("how", ["unsigned", "altered", "untrusted", "revoked", "other-bundle"])
async def test_serve_refuses_a_bundle_it_cannot_trust(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    config, ring = home_with_trust(tmp_path)
    expected = {
        "unsigned": "no policy signature (unsigned bundle",
        "altered": "but the policy files are",
        "untrusted": "not signed by any published key",
        "revoked": f"signed by key {ring.kid}, revoked since",
        "other-bundle": "but the policy files are",
    }[how]
    if how != "unsigned":
        sign(tmp_path, ring, capsys)
    if how == "altered":
        change_policy(tmp_path)
    elif how == "untrusted":
        other = KeyRing.create(tmp_path / "other")
        (tmp_path / "trusted.jwks.json").write_text(json.dumps(other.public().jwks()))
    elif how == "revoked":
        jwks = ring.public().jwks()
        jwks["keys"][0]["revoked_since"] = "2020-01-01T00:00:00Z"
        (tmp_path / "trusted.jwks.json").write_text(json.dumps(jwks))
    elif how == "other-bundle":
        signature = (tmp_path / "policies" / "policy.sig.json").read_bytes()
        change_policy(tmp_path)  # another bundle, with the first one's signature
        (tmp_path / "policies" / "policy.sig.json").write_bytes(signature)
    with pytest.raises(EvidenceError, match=expected.replace("(", r"\(")):
        await build(load_settings(config), adapters=False)
    # and `signoff serve` as a user runs it: one line on stderr, non-zero, nothing served
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "adapters.cli", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("signoff: error: ")]
    assert len(errors) == 1 and expected in errors[0], done.stderr
    assert "Traceback" not in done.stderr


async def test_a_bad_trusted_keys_file_refuses_to_start(tmp_path: Path) -> None:
    config, _ = home_with_trust(tmp_path)
    (tmp_path / "trusted.jwks.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"trusted\.jwks\.json: not a JWKS or PEM"):
        await build(load_settings(config), adapters=False)


@pytest_asyncio.fixture
async def signed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> AsyncIterator[tuple[Runtime, KeyRing]]:
    config, ring = home_with_trust(tmp_path)
    sign(tmp_path, ring, capsys)
    runtime = await build(load_settings(config), adapters=False)
    try:
        yield runtime, ring
    finally:
        await runtime.store.close()


async def test_a_reload_of_an_unsigned_change_keeps_the_policy_in_force(
    signed: tuple[Runtime, KeyRing],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    runtime, ring = signed
    before = runtime.policies.current
    change_policy(tmp_path)
    with caplog.at_level(logging.WARNING, logger="bot.policy.holder"):
        assert runtime.policies.reload() is False
    assert runtime.policies.current is before
    assert any(
        r.levelno == logging.WARNING and "policy reload failed, keeping" in r.getMessage()
        and "signature is over bundle" in r.getMessage()
        for r in caplog.records
    )  # fmt: skip
    metrics = runtime.gate.metrics.render().decode()
    assert 'signoff_policy_reload_failures_total{reason="signature"} 1.0' in metrics
    # signing the change puts it in force
    sign(tmp_path, ring, capsys)
    assert runtime.policies.reload() is True
    assert runtime.policies.current.digest != before.digest
    assert runtime.policies.current.signer == ring.kid


async def test_the_signature_may_live_where_policy_signature_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, ring = home_with_trust(tmp_path)
    text = config.read_text().replace(
        "trusted_keys: [./trusted.jwks.json]",
        "trusted_keys: [./trusted.jwks.json], signature: ./signed/bundle.json",
    )
    config.write_text(text)
    (tmp_path / "signed").mkdir()
    key = tmp_path / "keys" / f"{ring.kid}.key"
    out = tmp_path / "signed" / "bundle.json"
    args = ["policy", "sign", str(tmp_path / "policies"), "--key", str(key), "--out", str(out)]
    assert cli(args) == 0
    capsys.readouterr()
    runtime = await build(load_settings(config), adapters=False)
    try:
        assert runtime.policies.current.signer == ring.kid
    finally:
        await runtime.store.close()
