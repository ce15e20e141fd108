"""Server memory with every adapter loaded (SPEC §9: ≤ 120 MB RSS).

Starts ``signoff serve`` on a fresh home with Slack, Teams, PagerDuty and the console all
configured (Slack and Teams pointed at unused local addresses: nothing is posted), waits until
it is healthy and idle, and prints the process's resident set size. Then it sends 1,000
auto-tier calls and one call that a ``sql_*`` rule of the example policy evaluates (the SQL
parser loads with the first one) and prints the size again. A security-key ceremony, which
loads py_webauthn (~7 MB) with the first one, is not run here.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.serving import SIGNOFF, init_home


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def call(port: int, token: str, body: dict[str, object]) -> str:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/requests",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as answer:  # noqa: S310 - loopback
        return str(json.load(answer)["status"])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg, port = init_home(Path(tmp))
        env = dict(os.environ)
        env.update(
            SLACK_BOT_TOKEN="xoxb-bench",
            SLACK_SIGNING_SECRET="bench-secret",
            TEAMS_APP_ID="00000000-0000-0000-0000-000000000001",
            TEAMS_APP_PASSWORD="bench",
            TEAMS_TENANT_ID="00000000-0000-0000-0000-000000000002",
            PAGERDUTY_ROUTING_KEY="bench",
        )
        text = cfg.read_text().replace(
            "api_base_url: https://slack.com/api/", "api_base_url: http://127.0.0.1:9/api/"
        )
        cfg.write_text(text)
        proc = subprocess.Popen([SIGNOFF, "--config", str(cfg), "serve"], env=env)
        try:
            for _ in range(300):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                        break
                except OSError:
                    time.sleep(0.1)
            time.sleep(2)
            print(
                f"signoff serve with Slack, Teams, PagerDuty and the console loaded: "
                f"RSS {rss_mb(proc.pid):.1f} MB (target <= 120 MB)"
            )
            token = (cfg.parent / "demo-agent.token").read_text().strip()
            statuses = [
                call(port, token, {"tool": "crm.read", "arguments": {"id": i}}) for i in range(1000)
            ]
            sql = {"schema": "staging", "statement": "DROP TABLE t"}
            statuses.append(call(port, token, {"tool": "db.execute", "arguments": sql}))
            time.sleep(1)
            print(
                f"after 1,000 auto-tier calls and one sql_* rule evaluated "
                f"({statuses.count('approved')} approved, {statuses.count('denied')} denied): "
                f"RSS {rss_mb(proc.pid):.1f} MB"
            )
        finally:
            proc.terminate()
            proc.wait(timeout=20)


if __name__ == "__main__":
    main()
