"""``signoff users …`` and ``signoff report`` against a real SQLite database (SPEC §3)."""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import nacl.pwhash
import pytest

from adapters.cli import main
from bot.domain import Agent, Change
from bot.settings import load_settings
from bot.store import SqlStore
from bot.store.users import UserStore
from tests.report_history import T0, UNTIL, as_pending, history
from tests.support import write_home


@pytest.fixture
def config(tmp_path: Path) -> str:
    return str(write_home(tmp_path))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_users_add_list_disable(
    config: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-passw0rd\n"))
    code, out, _ = run(capsys, "--config", config, "users", "add", "alice", "--password-stdin")
    assert code == 0 and "alice added" in out

    async def stored() -> str:
        store = await SqlStore.open(load_settings(config).database_url)
        try:
            user = await UserStore(store).get_user("alice")
            assert user is not None
            return user.password_hash
        finally:
            await store.close()

    password_hash = asyncio.run(stored())
    assert password_hash.startswith("$argon2id$")
    assert nacl.pwhash.verify(password_hash.encode(), b"s3cret-passw0rd")

    monkeypatch.setattr("sys.stdin", io.StringIO("another-password\n"))
    code, _, err = run(capsys, "users", "add", "alice", "--password-stdin", "--config", config)
    assert code == 1 and "already exists" in err

    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    code, _, err = run(capsys, "--config", config, "users", "add", "bob", "--password-stdin")
    assert code == 1 and "at least 8" in err

    code, _, err = run(capsys, "--config", config, "users", "add", "<b>", "--password-stdin")
    assert code == 1 and "not a valid user name" in err

    code, out, _ = run(capsys, "--config", config, "users", "disable", "alice")
    assert code == 0
    code, out, _ = run(capsys, "--config", config, "users", "list", "--json")
    assert [(u["name"], u["disabled"]) for u in json.loads(out)] == [("alice", True)]
    code, _, err = run(capsys, "--config", config, "users", "disable", "nobody")
    assert code == 1 and "no console user" in err


async def _seed(url: str) -> None:
    store = await SqlStore.open(url)
    try:
        await store.add_agent(Agent("billing-agent", "f" * 64, T0))
        requests, votes = history()
        for request in requests:
            if request.id not in votes:
                await store.insert_request(request)
                continue
            before = await store.insert_request(as_pending(request))
            after = replace(request, version=before.version + 1)
            await store.commit(Change(before, after, vote=votes[request.id][0]))
    finally:
        await store.close()


def test_report_json_on_a_seeded_database(
    config: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    asyncio.run(_seed(load_settings(config).database_url))
    code, out, _ = run(
        capsys,
        "--config",
        config,
        "report",
        "--since",
        T0.isoformat(),
        "--until",
        UNTIL.isoformat().replace("+00:00", "Z"),
        "--format",
        "json",
        "--min-requests",
        "3",
    )
    assert code == 0
    data = json.loads(out)
    assert data["requests"] == 16
    assert data["by_outcome"] == {"approved": 6, "denied": 5, "expired": 1, "pending": 4}
    assert data["approval_rate"] == pytest.approx(5 / 9)
    assert data["time_to_decision"] == {"count": 9, "median_seconds": 40.0, "p90_seconds": 600.0}
    tools = {t["key"]: t for t in data["tools"]}
    assert tools["payments.transfer"]["time_to_decision"]["median_seconds"] == 120.0
    approvers = {a["key"]: a for a in data["approvers"]}
    assert approvers["alice"]["fast_decisions"] == 1
    assert data["denial_reasons"][0] == {"reason": "not allowed", "count": 2}
    assert data["escalations"] == {"requests": 1, "steps": 2, "to_groups": 1}
    assert [(s["kind"], s["subject"]) for s in data["signals"]] == [
        ("fast_approver", "alice"),
        ("always_approved", "db.delete"),
        ("always_denied", "repos.force_push"),
        ("growing_backlog", "ops"),
    ]

    # a narrower window: only the first hour
    code, out, _ = run(
        capsys,
        "--config",
        config,
        "report",
        "--since",
        "2026-11-01",
        "--until",
        "2026-11-01T01:00Z",
        "--format",
        "json",
    )
    assert json.loads(out)["requests"] == 7

    html = tmp_path / "report.html"
    code, _, err = run(
        capsys,
        "--config",
        config,
        "report",
        "--since",
        "2026-11-01",
        "--until",
        "2026-11-01T03:00Z",
        "--format",
        "html",
        "--output",
        str(html),
    )
    text = html.read_text()
    assert code == 0 and "report written" in err
    assert "<svg" in text and 'id="chart-ttd"' in text
    assert "src=" not in text and 'href="http' not in text and "@import" not in text

    code, out, _ = run(
        capsys,
        "--config",
        config,
        "report",
        "--since",
        "2026-11-01",
        "--until",
        "2026-11-01T03:00Z",
    )
    assert code == 0 and "requests: 16" in out

    code, _, err = run(capsys, "--config", config, "report", "--since", "yesterday")
    assert code == 1 and "is not a time" in err


def test_report_since_a_duration_ago(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--config", config, "report", "--since", "7d", "--format", "json")
    since = datetime.fromisoformat(json.loads(out)["window"]["since"].replace("Z", "+00:00"))
    assert code == 0
    assert 6.9 < (datetime.now(UTC) - since).total_seconds() / 86400 < 7.1
