"""What a server loads at start stays within SPEC §9's 120 MB: a SQLite deployment never loads
the PostgreSQL driver (psycopg and its pool hold ~10 MB of resident memory), and the libraries
only a rare path needs load with that path's first use: py_webauthn (~7 MB with pyasn1, cbor2
and pyOpenSSL) with the first security-key ceremony, pglast (~3 MB) with the first ``sql_*``
policy helper evaluated. Checked in a fresh interpreter: this test process imports them all
for other tests."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SIGNOFF = str(Path(sys.executable).with_name("signoff"))
SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path

    from adapters.console.stepup import StepUp
    from adapters.main import build
    from bot.domain import ToolCall
    from bot.service import Submission
    from bot.settings import load_settings
    from bot.store.passkeys import PasskeyStore

    WATCHED = {"psycopg", "psycopg_pool", "webauthn", "pglast"}

    def loaded() -> list[str]:
        return sorted({m.split(".")[0] for m in sys.modules} & WATCHED)

    async def main() -> None:
        rt = await build(load_settings(Path(sys.argv[1])), adapters=True)
        seen = {}
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
            seen["started"] = loaded()
            sql = ToolCall("db.execute", {"schema": "staging", "statement": "DROP TABLE t"})
            blocked, _ = await rt.gate.submit(agent, Submission(sql))
            assert blocked.policy.rule == "sql-destructive", blocked
            seen["sql"] = loaded()
            options = await StepUp(PasskeyStore(rt.store), "https://signoff.example").registration_options(
                "session", "alice"
            )
            assert json.loads(options)["rp"]["id"] == "signoff.example", options
            seen["ceremony"] = loaded()
        finally:
            await rt.close()
        print(json.dumps(seen))

    asyncio.run(main())
    """
)


def test_a_sqlite_server_loads_no_postgresql_driver_and_rare_libraries_on_first_use(
    tmp_path: Path,
) -> None:
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
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen == {"started": [], "sql": ["pglast"], "ceremony": ["pglast", "webauthn"]}
