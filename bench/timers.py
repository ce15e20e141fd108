"""Escalation timers of a real ``signoff serve``, observed from outside (SPEC §9: steps fire
≤ 1 s late at p99).

    .venv/bin/python bench/timers.py [--background 1000] [--sample 500] [--window 10]

Starts ``signoff serve`` (agent API + Slack adapter + escalation scheduler, SQLite, console
off) on a fresh home whose policy gives the ``bench.short`` tool a short ladder: remind at
``REMIND`` (a thread reply under the card), deny at ``DENY`` (``sla`` and the ladder's last
step). The fake Slack Web API from ``bench/fakes`` runs in this process, outside the server.

1. ``--background`` confirm-tier requests under a 3 h SLA are submitted first, so the server
   holds that many live timers that are not due during the run.
2. ``--sample`` ``bench.short`` requests are submitted at scheduled times spread evenly over
   ``--window`` seconds; each one's agent then long-polls ``GET /v1/requests/{id}?wait=…``
   until the request is final.
3. Lateness of a step = the moment it is seen from outside minus its due time (the request's
   ``created_at`` from the 201 answer + the step's ``after``): the reminder when the fake
   Slack receives the thread reply, the deny when the agent's long-poll answers ``expired``.
   Server and client share the machine's clock.

Prints p50/p99/max of both, the steps seen, and the load average (client, fake and server
share the machine). Runs in ~45 s with the defaults. Fails (exit 1) if a step is missing or
a request ends other than expired.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fakes.slack_api import Call, FakeSlack
from bench.serving import add_agent, free_port, serve, wait_ready, write_home
from bench.stats import percentile

REMIND = 10.0  # seconds after creation
DENY = 20.0
APPROVER = "U0BENCH"
_REQUEST_ID = re.compile(r"request `([0-9a-f-]{36})`")

POLICY = f"""\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {{name: bench-timers, version: "1"}}
groups:
  ops:
    slack: {{channel: C0OPS, users: [{APPROVER}]}}
defaults: {{unknown_tool: confirm, sla: 15m, approvers: {{groups: [ops]}}}}
rules:
  - name: short
    tool: bench.short
    tier: confirm
    approvers: {{groups: [ops]}}
    sla: {DENY:.0f}s
    escalation:
      - {{after: {REMIND:.0f}s, remind: true}}
      - {{after: {DENY:.0f}s, action: deny}}
  - name: background
    tool: bench.background
    tier: confirm
    approvers: {{groups: [ops]}}
    sla: 3h
"""


class Reminders:
    """Maps each card's ts to its request and records (wall clock) when a reminder arrives
    in the card's thread."""

    def __init__(self) -> None:
        self.card: dict[str, str] = {}  # card ts -> request id
        self.seen: dict[str, float] = {}  # request id -> when its first reminder arrived

    def __call__(self, call: Call) -> None:
        now = time.time()
        if call.method != "chat.postMessage" or not call.answer.get("ok"):
            return
        thread = call.args.get("thread_ts")
        if thread is None:
            match = _REQUEST_ID.search(str(call.args.get("blocks")))
            if match is not None:
                self.card[str(call.answer["ts"])] = match.group(1)
            return
        rid = self.card.get(str(thread))
        if rid is not None and "Reminder" in str(call.args.get("text")):
            self.seen.setdefault(rid, now)


def created(answer: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(answer["created_at"])).timestamp()


def summary(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"p50 {percentile(ms, 0.5):.0f} ms, p99 {percentile(ms, 0.99):.0f} ms, max {max(ms):.0f} ms"
    )


async def run(options: argparse.Namespace) -> int:
    fake = FakeSlack()
    await fake.start()
    fake.add_user(APPROVER, "approver", "approver@example.com")
    reminders = Reminders()
    fake.observers.append(reminders)
    extra = (
        "slack:\n"
        f"  bot_token: {fake.token}\n"
        "  signing_secret: bench-signing-secret\n"
        f"  api_base_url: {fake.base_url}\n"
        "console: {enabled: false}\n"
        "logging: {level: WARNING}\n"
    )
    with tempfile.TemporaryDirectory(prefix="signoff-bench-timers-") as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        config = write_home(Path(tmp), policy=POLICY, port=port, extra=extra)
        # one agent holds every request and long-poll: lift its caps (1,000 and 100)
        caps = "server: {max_pending_per_agent: 1000000, max_long_polls_per_agent: 100000, "
        config.write_text(config.read_text().replace("server: {", caps, 1))
        auth = {"Authorization": f"Bearer {add_agent(config)}"}
        proc = serve(config)
        try:
            connector = aiohttp.TCPConnector(limit=0)
            timeout = aiohttp.ClientTimeout(total=None)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                await wait_ready(http, base, proc)

                async def submit(tool: str, n: int) -> dict[str, Any]:
                    body = {"tool": tool, "arguments": {"n": n}, "justification": "bench"}
                    async with http.post(f"{base}/v1/requests", json=body, headers=auth) as r:
                        if r.status != 201:
                            raise SystemExit(f"submit answered {r.status}: {await r.text()}")
                        answer: dict[str, Any] = await r.json()
                        return answer

                t = time.perf_counter()
                queue = iter(range(options.background))

                async def background() -> None:
                    for n in queue:
                        await submit("bench.background", n)

                await asyncio.gather(*(background() for _ in range(8)))
                print(
                    f"{options.background:,} background requests (3 h SLA) submitted in "
                    f"{time.perf_counter() - t:.1f} s"
                )

                remind_due: dict[str, float] = {}
                deny_late: list[float] = []
                statuses: dict[str, int] = {}

                async def one(n: int, at: float) -> None:
                    await asyncio.sleep(max(0.0, at - time.monotonic()))
                    answer = await submit("bench.short", n)
                    rid, due = str(answer["id"]), created(answer)
                    remind_due[rid] = due + REMIND
                    path = f"{base}/v1/requests/{rid}?wait=30"
                    while answer["status"] == "pending":
                        async with http.get(path, headers=auth) as r:
                            answer = await r.json()
                            seen = time.time()
                            if r.status != 200:
                                raise SystemExit(f"long-poll answered {r.status}: {answer}")
                    status = str(answer["status"])
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == "expired":
                        deny_late.append(seen - (due + DENY))

                start = time.monotonic() + 0.5
                step = options.window / options.sample
                await asyncio.gather(*(one(n, start + n * step) for n in range(options.sample)))
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            await fake.close()

    remind_late = [
        reminders.seen[rid] - due for rid, due in remind_due.items() if rid in reminders.seen
    ]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{options.sample} short requests over {options.window:.0f} s; final: {statuses}")
    print(f"reminders seen at the Slack fake: {len(remind_late)}/{options.sample}")
    if remind_late:
        print(f"  reminder lateness (due -> thread reply at the fake): {summary(remind_late)}")
    print(f"expiries seen by the agents' long-polls: {len(deny_late)}/{options.sample}")
    if deny_late:
        print(f"  deny lateness (due -> long-poll answers expired): {summary(deny_late)}")
    print(f"load average (1/5/15 min): {load}")
    complete = len(remind_late) == len(deny_late) == options.sample
    worst = max(percentile(remind_late, 0.99), percentile(deny_late, 0.99)) if complete else 0
    if not complete:
        print("STEPS MISSING")
        return 1
    print("target met (p99 <= 1 s)" if worst <= 1 else "TARGET MISSED (p99 > 1 s)")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--background", type=int, default=1000, help="long-SLA pending requests")
    parser.add_argument("--sample", type=int, default=500, help="short-ladder requests")
    parser.add_argument("--window", type=float, default=10.0, help="seconds to spread them over")
    raise SystemExit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
