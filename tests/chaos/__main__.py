"""``make chaos``: 200 SIGKILLs under the mixed load on SQLite and on PostgreSQL, then every
check; prints kills, acknowledged requests lost, steps run twice, wrong allows, grants used
twice and whether the log verifies, per backend. Exits 1 unless every figure is clean.

``python -m tests.chaos [--kills N] [--backend sqlite|postgres|all] [--seed S] [--keep]``
(PostgreSQL: the server named by ``SIGNOFF_TEST_PG_URL``, else a throwaway cluster).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from tests.chaos.check import Report
from tests.chaos.harness import pg_database, run_kills


async def one(backend: str, kills: int, seed: int | None, keep: bool) -> Report:
    root = Path(tempfile.mkdtemp(prefix=f"signoff-chaos-{backend}-"))
    try:
        if backend == "sqlite":
            return await run_kills(backend, root, f"sqlite:///{root / 'signoff.db'}", kills, seed)
        with pg_database() as url:
            return await run_kills(backend, root, url, kills, seed)
    finally:
        if keep:
            print(f"{backend}: home kept in {root}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep each run's home (logs)")
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    reports = []
    for backend in backends:
        report = asyncio.run(one(backend, args.kills, args.seed, args.keep))
        reports.append(report)
        print(report.line(), flush=True)
        print(f"  {report.problems[0]}, {report.seconds['total']:.0f} s", flush=True)
        for problem in report.problems[1:21]:
            print(f"  {problem}", flush=True)
        if not report.verify_ok:
            print(f"  audit verify: {report.verify_output}", flush=True)
    print("== chaos")
    for report in reports:
        print(report.line())
    return 0 if all(r.clean for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
