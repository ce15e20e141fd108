"""A restored database backup stops ``signoff serve`` (SPEC §7 "Rollback and forks").

The security review restored an older ``signoff.db``, restarted and appended: the server
published a different tree of the same size over the old checkpoint and ``audit verify``
passed. Here the real server is run, appended to, stopped, the backup copied back and the
server restarted: it refuses with one line and a non-zero exit, and the published checkpoint
is left as it was.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from bot.evidence.checkpoint import parse_checkpoint, sign_checkpoint
from bot.evidence.keys import KeyRing
from tests.e2e.process import Serve, add_agent, http, init_home

pytestmark = pytest.mark.slow


def submit(base: str, token: str, n: int) -> None:
    for i in range(n):
        status, body, _ = http(
            "POST", base + "/v1/requests", {"tool": "crm.read", "arguments": {"id": i}}, token
        )
        assert status == 201 and body["status"] == "approved", body


def run(config: Path, base: str, home: Path, name: str) -> Serve:
    serve = Serve(["--config", str(config), "serve"], home / f"{name}.log")
    serve.wait_healthy(base + "/healthz")
    return serve


def published_size(home: Path) -> int:
    path = home / "checkpoints" / "latest"
    return parse_checkpoint(path.read_text()).size if path.exists() else 0


def test_restored_backup_stops_serve(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config, base = init_home(home)
    token = add_agent(config, "agent")
    first = run(config, base, home, "first")
    submit(base, token, 2)
    assert first.stop() == 0
    backup = tmp_path / "backup.db"
    shutil.copy(home / "signoff.db", backup)
    assert published_size(home) == 2

    second = run(config, base, home, "second")
    submit(base, token, 3)
    assert second.stop() == 0
    before = (home / "checkpoints" / "latest").read_text()
    assert published_size(home) == 5

    for suffix in ("-wal", "-shm"):
        (home / f"signoff.db{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, home / "signoff.db")
    third = Serve(["--config", str(config), "serve"], home / "third.log")
    code = third.wait(60)
    lines = [line for line in third.output().splitlines() if line.strip()]
    assert code != 0
    assert lines[-1].startswith("signoff: error: log rollback or fork detected"), lines
    assert "(size 2)" in lines[-1] and "(size 5)" in lines[-1]
    assert "Traceback" not in third.output()
    assert (home / "checkpoints" / "latest").read_text() == before


@pytest.mark.parametrize("workers", [1, 2])
def test_published_fork_stops_a_running_server_before_it_publishes(
    tmp_path: Path, workers: int
) -> None:
    """Before each publish: a published checkpoint the store's log does not extend (here a
    different tree, signed with the server's own key as a restored server would have) stops
    the running server instead of being overwritten (with ``--workers 2``, the supervisor
    stops every worker rather than restarting the one that found it)."""
    home = tmp_path / "home"
    config, base = init_home(home)
    token = add_agent(config, "agent")
    serve = Serve(["--config", str(config), "serve", "--workers", str(workers)], home / "serve.log")
    serve.wait_healthy(base + "/healthz")
    try:
        submit(base, token, 2)
        deadline = time.monotonic() + 10
        while published_size(home) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        fork = sign_checkpoint("signoff.local/log", 3, os.urandom(32), KeyRing.load(home / "keys"))
        (home / "checkpoints" / "latest").write_text(fork)
        submit(base, token, 2)
        code = serve.wait(30)
    finally:
        serve.kill()
    lines = [line for line in serve.output().splitlines() if line.strip()]
    assert code != 0
    if workers == 1:
        assert lines[-1].startswith("signoff: error: log rollback or fork detected"), lines
    else:
        assert any("log rollback or fork detected" in line for line in lines), lines
        assert "replacing it" not in serve.output()
    assert (home / "checkpoints" / "latest").read_text() == fork
