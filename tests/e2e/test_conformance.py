"""API conformance: Schemathesis generates requests from the served ``/openapi.json`` and runs
every check (``--checks all``: no 5xx, status codes, content types and response schemas as
documented, schema-valid requests accepted, schema-invalid ones rejected, 405 with ``Allow``,
auth honoured...) against a real ``signoff serve``. Zero failures over at least 1,000 cases.

The policy gives confirm-tier requests a 2 s SLA, so a generated long-poll on a pending
request returns within the request timeout. ``SIGNOFF_CONFORMANCE_EXAMPLES`` raises the
number of cases per operation (default 90, about 1,000 cases in all)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serve_process import Server, init_home

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
EXAMPLES = int(os.environ.get("SIGNOFF_CONFORMANCE_EXAMPLES", "90"))

POLICY = """\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {name: conformance, version: "c-1"}
groups:
  ops:
    console: {users: [alice]}
defaults:
  unknown_tool: confirm
  sla: 2s
  approvers: {groups: [ops]}
rules:
  - {name: reads, tool: "*.read", tier: auto}
  - {name: notes, tool: "*.note", tier: notify, approvers: {groups: [ops]}}
  - {name: drops, tool: "*.drop", tier: block, reason: "never"}
  - {name: writes, tool: "*.write", tier: confirm, approvers: {groups: [ops]}, sla: 2s}
"""


def test_schemathesis_finds_no_failure_in_1000_generated_cases(tmp_path: Path) -> None:
    config = init_home(tmp_path, policy=POLICY)
    token = (config.parent / "demo-agent.token").read_text().strip()
    server = Server(config)
    server.start()
    try:
        run = subprocess.run(
            [
                SCHEMATHESIS,
                "run",
                f"{server.base}/openapi.json",
                "--checks",
                "all",
                "--header",
                f"Authorization: Bearer {token}",
                "--max-examples",
                str(EXAMPLES),
                "--seed",
                os.environ.get("SIGNOFF_CONFORMANCE_SEED", "20261202"),
                "--request-timeout",
                "15",
                "--workers",  # one: Hypothesis' lambda-source parsing is not thread-safe on 3.11
                "1",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={
                **os.environ,
                "SCHEMATHESIS_HOOKS": "tests.e2e.conformance_hooks",
                "PYTHONPATH": str(ROOT),
                "NO_COLOR": "1",
            },
            check=False,
            timeout=900,
        )
    finally:
        code = server.stop()
    output = run.stdout + run.stderr
    (tmp_path / "schemathesis.txt").write_text(output)
    first = min(
        (i for i in (output.find("= ERRORS ="), output.find("= FAILURES =")) if i >= 0), default=0
    )
    assert run.returncode == 0, output[max(first - 80, 0) :][:20000]
    generated = re.search(r"(\d+) generated", output)
    assert generated is not None, output[-3000:]
    assert int(generated.group(1)) >= 1000, output[-3000:]
    assert code == 0, server.log_path.read_text()[-3000:]
    log = server.log_path.read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-5000:]
