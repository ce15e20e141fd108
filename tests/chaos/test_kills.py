"""Crash injection, short form (``make test``): a few SIGKILLs of ``signoff serve`` under the
mixed load, on SQLite and on PostgreSQL, then every check of ``tests.chaos.check``: nothing
acknowledged lost, no escalation step twice, no wrong allow, no grant used twice, the audit
log verifies. ``make chaos`` runs the same with 200 kills per backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import pg_database, run_kills

pytestmark = pytest.mark.slow

KILLS = 2


async def test_sigkills_under_load_on_sqlite(tmp_path: Path) -> None:
    report = await run_kills("sqlite", tmp_path, f"sqlite:///{tmp_path / 'signoff.db'}", KILLS)
    assert report.kills == KILLS and report.acknowledged > 0, report
    assert report.clean, (report.line(), report.problems, report.verify_output)


@pytest.mark.postgres
async def test_sigkills_under_load_on_postgresql(tmp_path: Path) -> None:
    with pg_database() as url:
        report = await run_kills("postgres", tmp_path, url, KILLS)
    assert report.kills == KILLS and report.acknowledged > 0, report
    assert report.clean, (report.line(), report.problems, report.verify_output)
