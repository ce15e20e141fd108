"""``signoff witness init/serve`` beside a real ``signoff serve`` with ``log.witnesses``.

The witness cosigns the growing log; ``/v1/log/checkpoint`` carries its cosignature;
``audit verify --witness KEY`` passes with its key and fails with another. Then the
database is restored from a backup and the published checkpoint deleted too (an operator
covering their tracks): the witness refuses the rewritten history, and ``audit verify
--witness`` fails.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.process import Serve, add_agent, http, init_home
from tests.serve_process import SIGNOFF, free_port
from tests.serve_process import quiet_env as clean_env

pytestmark = pytest.mark.slow


def submit(base: str, token: str, n: int) -> None:
    for i in range(n):
        status, body, _ = http(
            "POST", base + "/v1/requests", {"tool": "crm.read", "arguments": {"id": i}}, token
        )
        assert status == 201, body


def verify(config: Path, *keys: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIGNOFF, "--config", str(config), "audit", "verify", "--witness", *keys],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
    )


def wait_cosigned(base: str, name: str, size: int) -> str:
    deadline = time.monotonic() + 30
    note = ""
    while time.monotonic() < deadline:
        _, note, _ = http("GET", base + "/v1/log/checkpoint")
        if f"\u2014 {name} " in note and int(note.split("\n")[1]) >= size:
            return str(note)
        time.sleep(0.1)
    raise AssertionError(f"never cosigned:\n{note}")


def test_witnessed_log_and_a_restored_backup(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config, base = init_home(home)
    token = add_agent(config, "agent")
    wdir = tmp_path / "witness"
    port = free_port()
    out = subprocess.run(
        [SIGNOFF, "--config", str(config), "witness", "init", str(wdir), "--name",
         "witness.test/w1", "--port", str(port)],
        capture_output=True, text=True, check=True, env=clean_env(),
    )  # fmt: skip
    vkey = out.stdout.strip().splitlines()[-1].removeprefix("witness key: ")
    assert vkey.startswith("witness.test/w1+")
    assert "signoff.local/log+" in (wdir / "witness.yaml").read_text()
    config.write_text(
        config.read_text().replace(
            "log:\n",
            "log:\n  witnesses:\n"
            f'    - {{name: witness.test/w1, url: "http://127.0.0.1:{port}", key: "{vkey}"}}\n'
            "  witness_quorum: 1\n",
        )
    )
    witness = Serve(["witness", "serve", "--config", str(wdir / "witness.yaml")], wdir / "w.log")
    try:
        witness.wait_healthy(f"http://127.0.0.1:{port}/")
        server = Serve(["--config", str(config), "serve"], home / "serve.log")
        server.wait_healthy(base + "/healthz")
        submit(base, token, 2)
        wait_cosigned(base, "witness.test/w1", 2)
        assert server.stop() == 0
        backup = tmp_path / "backup.db"
        shutil.copy(home / "signoff.db", backup)

        server = Serve(["--config", str(config), "serve"], home / "serve2.log")
        server.wait_healthy(base + "/healthz")
        submit(base, token, 3)
        wait_cosigned(base, "witness.test/w1", 5)
        assert server.stop() == 0
        good = verify(config, vkey)
        assert good.returncode == 0, good.stderr
        assert "cosigned by every witness" in good.stdout
        other = vkey.split("+")[0] + "+00000000+" + "BA" + "A" * 42 + "="
        wrong = verify(config, "witness.test/w2+" + vkey.split("+", 1)[1])
        assert wrong.returncode != 0 and wrong.stderr.startswith("signoff: error:")
        assert verify(config, other).returncode != 0

        # Restore the backup and remove the published checkpoint: the server starts, but
        # the witness will not cosign the rewritten history.
        for suffix in ("-wal", "-shm"):
            (home / f"signoff.db{suffix}").unlink(missing_ok=True)
        shutil.copy(backup, home / "signoff.db")
        (home / "checkpoints" / "latest").unlink()
        server = Serve(["--config", str(config), "serve"], home / "serve3.log")
        server.wait_healthy(base + "/healthz")
        submit(base, token, 4)  # size 6: a different tree than the witnessed size 5
        refused = "answered HTTP 422: the consistency proof does not verify"
        deadline = time.monotonic() + 30
        while refused not in server.output() and time.monotonic() < deadline:
            time.sleep(0.1)  # until the server has asked the witness and been refused
        _, note, _ = http("GET", base + "/v1/log/checkpoint")
        assert int(note.split("\n")[1]) == 6 and "witness.test/w1" not in note
        assert server.stop() == 0
        assert refused in server.output()
        assert "is not consistent with its checkpoint 5" in witness.output()
        rolled = verify(config, vkey)
        assert rolled.returncode != 0
        assert "not witnessed" in rolled.stderr, rolled.stderr
    finally:
        witness.stop()
