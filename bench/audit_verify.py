"""``signoff audit verify`` throughput over a large log of real signed attestations (SPEC §9:
≥ 20,000 entries/s, i.e. 1,000,000 entries in under a minute).

Makes a fresh ``signoff init`` home, appends N genuine attestations (one auto-tier request
each: statement, DSSE signature with the home's key, appended through the store's own log
code in large transactions), then times the CLI ``signoff audit verify`` end to end (process
start, checkpoint, reading every entry, checking every signature and the tree).

    .venv/bin/python bench/audit_verify.py [--entries 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.requests import NOW, auto_request
from bench.serving import SIGNOFF
from bot.domain import Event
from bot.evidence.keys import KeyRing
from bot.evidence.statement import attest
from bot.settings import load_settings
from bot.store import SqlStore

PER_TRANSACTION = 5_000


async def build_log(home: Path, entries: int) -> float:
    settings = load_settings(home / "signoff.yaml")
    keys = KeyRing.load(settings.path(settings.keys.dir))
    store = await SqlStore.open(settings.database_url)
    t0 = time.perf_counter()
    try:
        for start in range(0, entries, PER_TRANSACTION):
            envelopes = [
                attest(auto_request(n), Event.AUTO_ALLOWED, keys, at=NOW)
                for n in range(start, min(start + PER_TRANSACTION, entries))
            ]

            def append(
                conn: Any, pending: Any, envelopes: list[bytes] = envelopes, first: int = start
            ) -> None:
                for k, envelope in enumerate(envelopes):
                    pending.add(envelope, Event.AUTO_ALLOWED, f"req-{first + k:09d}")

            await store.transact(append)
    finally:
        await store.close()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        subprocess.run([SIGNOFF, "init", str(home)], check=True, capture_output=True)
        built = asyncio.run(build_log(home, args.entries))
        print(f"log of {args.entries:,} signed attestations built in {built:.1f} s")
        # the database's dirty pages written out first: the kernel's writeback of a log
        # built a second ago would share the two cores with the verification timed here
        os.sync()
        cfg = str(home / "signoff.yaml")
        t0 = time.perf_counter()
        done = subprocess.run(
            [SIGNOFF, "--config", cfg, "audit", "verify"], capture_output=True, text=True
        )
        took = time.perf_counter() - t0
        if done.returncode != 0:
            print(done.stdout, done.stderr, sep="\n")
            raise SystemExit(f"audit verify failed with exit code {done.returncode}")
        print(
            f"signoff audit verify over {args.entries:,} entries: {took:.1f} s, "
            f"{args.entries / took:,.0f} entries/s (target >= 20,000)"
        )


if __name__ == "__main__":
    main()
