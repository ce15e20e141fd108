"""A SQLite deployment never loads the PostgreSQL driver (psycopg and its pool hold ~10 MB
of a server's resident memory, SPEC §9's budget is 120 MB). Checked in a fresh interpreter:
this test process imports psycopg for the PostgreSQL tests."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SIGNOFF = str(Path(sys.executable).with_name("signoff"))
SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path

    from adapters.main import build
    from bot.domain import ToolCall
    from bot.service import Submission
    from bot.settings import load_settings

    async def main() -> None:
        rt = await build(load_settings(Path(sys.argv[1])))
        try:
            agent, _ = await rt.gate.register_agent("agent")
            stored, _ = await rt.gate.submit(agent, Submission(ToolCall("crm.read", {"i": 1})))
            assert stored.grant is not None, stored
            assert (await rt.gate.get(stored.id, agent)).id == stored.id
            led = asyncio.Event()

            async def work() -> None:
                led.set()

            await asyncio.wait_for(rt.store.lead(work), 10)
            assert led.is_set()
        finally:
            await rt.store.close()
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"psycopg", "psycopg_pool"})
        print(" ".join(loaded) or "none")

    asyncio.run(main())
    """
)


def test_a_sqlite_server_never_imports_the_postgresql_driver(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init = subprocess.run([SIGNOFF, "init", str(home)], capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(home / "signoff.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["none"]
