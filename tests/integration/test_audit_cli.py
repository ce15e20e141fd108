"""`signoff audit verify|prove|export` on a real SQLite home, and offline verification of the
prove bundle by the standalone example (standard library + PyNaCl only)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.cli import main
from adapters.main import build
from bot.domain import Approver, Platform, ToolCall, Verdict
from bot.service import Submission
from bot.settings import load_settings
from tests.support import write_home

ALICE = Approver(Platform.CONSOLE, "console", "alice", via="console_login")


def seed(config: Path) -> list[str]:
    async def go() -> list[str]:
        rt = await build(load_settings(config), adapters=False)
        try:
            agent, _ = await rt.gate.register_agent("auditor")
            ids = []
            for i in range(5):
                r, _ = await rt.gate.submit(agent, Submission(ToolCall("crm.read", {"i": i})))
                ids.append(r.id)
            r, _ = await rt.gate.submit(
                agent, Submission(ToolCall("payments.transfer", {"amount": 50000}, "refund"))
            )
            await rt.gate.decide(r.id, ALICE, Verdict.APPROVE, "ok", memberships={"finance"})
            ids.append(r.id)
            await rt.gate.drain()
            return ids
        finally:
            await rt.store.close()

    return asyncio.run(go())


@pytest.fixture
def home(tmp_path: Path) -> tuple[Path, list[str]]:
    config = write_home(tmp_path)
    return config, seed(config)


def test_verify_prove_export_and_offline_check(
    home: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, ids = home
    assert main(["--config", str(config), "audit", "verify"]) == 0
    assert "log intact: 6 entries" in capsys.readouterr().out

    assert main(["--config", str(config), "audit", "prove", ids[-1]]) == 0
    bundle = tmp_path / "bundle.json"
    bundle.write_text(capsys.readouterr().out)
    assert [e["index"] for e in json.loads(bundle.read_text())["entries"]] == [5]

    keys = tmp_path / "keys.json"
    assert main(["--config", str(config), "audit", "export"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and json.loads(lines[0])["event"] == "auto_allowed"

    async def jwks() -> dict[str, object]:
        rt = await build(load_settings(config), adapters=False)
        try:
            return rt.keys.jwks()
        finally:
            await rt.store.close()

    keys.write_text(json.dumps(asyncio.run(jwks())))
    example = Path(__file__).parents[2] / "examples" / "verify_offline.py"
    out = subprocess.run(
        [sys.executable, str(example), str(bundle), str(keys)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "entry 5: approved verified" in out.stdout

    # the offline checker refuses a bundle whose envelope was altered
    data = json.loads(bundle.read_text())
    data["entries"][0]["envelope"]["payloadType"] = "text/plain"
    bundle.write_text(json.dumps(data))
    out = subprocess.run(
        [sys.executable, str(example), str(bundle), str(keys)], capture_output=True, text=True
    )
    assert out.returncode != 0


def test_verify_names_the_first_tampered_entry(
    home: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = home
    # keep an older checkpoint outside the database, as an operator would
    assert main(["--config", str(config), "audit", "verify"]) == 0
    capsys.readouterr()
    db = sqlite3.connect(tmp_path / "signoff.db")
    try:
        (envelope,) = db.execute("SELECT envelope FROM log_entries WHERE idx = 3").fetchone()
        tampered = bytes(envelope).replace(b'"payloadType"', b'"payloadTypf"', 1)
        db.execute("UPDATE log_entries SET envelope = ? WHERE idx = 3", (tampered,))
        db.commit()
    finally:
        db.close()
    assert main(["--config", str(config), "audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("signoff: error:") and len(err.strip().splitlines()) == 1
    assert "entry 3" in err, err


def test_verify_detects_truncation_against_an_older_checkpoint(
    home: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = home

    async def checkpoint() -> str:
        rt = await build(load_settings(config), adapters=False)
        try:
            return (await rt.checkpoints.current()).note
        finally:
            await rt.store.close()

    older = tmp_path / "checkpoint.txt"
    older.write_text(asyncio.run(checkpoint()))
    assert main(["--config", str(config), "audit", "verify", "--checkpoint", str(older)]) == 0
    assert "consistent with the given checkpoint" in capsys.readouterr().out
    db = sqlite3.connect(tmp_path / "signoff.db")
    try:
        db.execute("DELETE FROM log_entries WHERE idx = 5")
        db.commit()
    finally:
        db.close()
    assert main(["--config", str(config), "audit", "verify", "--checkpoint", str(older)]) == 1
    assert "signoff: error:" in capsys.readouterr().err
