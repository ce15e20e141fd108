"""Escalation timers at scale (SPEC §9: 100,000 pending requests with live SLA timers in
≤ 300 MB RSS; steps fire ≤ 1 s late at p99; all timers back ≤ 5 s after a restart).

    .venv/bin/python bench/timers.py [--pending 100000] [--database URL]

What it does:

1. Writes a signoff home in a temporary folder and bulk-inserts ``--pending`` pending
   confirm requests (SQLite by default; ``--database postgresql+psycopg://…`` works too).
   Most have their next step an hour or more away; two samples of ``--sample`` requests have
   a remind step spread over a ``--window``-second window and a deny 5 s after it (the first
   window while the first server process runs, the second after the restart).
2. Starts a server process (core API + the escalation scheduler, as ``signoff serve`` wires
   it), which rebuilds every timer from the store and reports the time taken and its RSS,
   then reports how late each sample step ran (due → claimed, attested and published).
3. ``kill -9``s it and starts a second server process: reports the time from process start
   until every timer is back, its RSS, and the lateness of the second sample.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert

from bot.domain import (
    EscalationStep,
    PolicyRef,
    Request,
    Requirement,
    Status,
    Tier,
    ToolCall,
)
from bot.evidence.canonical import arguments_sha256, call_sha256
from bot.evidence.keys import KeyRing

POLICY = """\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {name: bench-timers, version: "1"}
groups:
  ops: {console: {users: [alice]}}
defaults: {unknown_tool: confirm, sla: 15m, approvers: {groups: [ops]}}
rules:
  - name: bench
    tool: bench.*
    tier: confirm
    approvers: {groups: [ops]}
    sla: 3h
"""
STARTUP_BUDGET = 20.0  # seconds from the end of the insert to the first sample window
DENY_AFTER = 5.0


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB."""
    values = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1]) / 1024
    return values["VmRSS"], values["VmHWM"]


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


# ---------------------------------------------------------------------- setup (parent)


def write_home(root: Path, database_url: str) -> Path:
    (root / "policies").mkdir(parents=True)
    (root / "policies" / "bench.yaml").write_text(POLICY, encoding="utf-8")
    KeyRing.create(root / "keys")
    config = root / "signoff.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            server: {{host: 127.0.0.1, port: 0}}
            database: {{url: "{database_url}"}}
            keys: {{dir: ./keys}}
            policy: {{paths: [./policies], watch: false}}
            console: {{enabled: false}}
            logging: {{level: WARNING}}
            """
        ),
        encoding="utf-8",
    )
    return config


def pending(created: datetime, steps: tuple[EscalationStep, ...], tool: str) -> Request:
    rid = str(uuid.uuid4())
    args = {"n": rid[:8]}
    return Request(
        id=rid,
        agent_id="bench-agent",
        call=ToolCall(tool, args, "bench"),
        tier=Tier.CONFIRM,
        status=Status.PENDING,
        policy=PolicyRef("sha256:" + "0" * 64, "1", "bench"),
        requirement=Requirement(groups=("ops",)),
        created_at=created,
        arguments_sha256=arguments_sha256(args),
        call_sha256=call_sha256(rid, "bench-agent", tool, args),
        escalation=steps,
        deadline=created + steps[-1].after,
    )


async def populate(url: str, total: int, sample: int, window: float) -> tuple[datetime, datetime]:
    """Insert the requests; return the start of the two sample windows."""
    from bot.store import SqlStore, mapping
    from bot.store.tables import REQUESTS

    store = await SqlStore.open(url)
    rows: list[dict[str, Any]] = []

    def flush() -> None:
        with store.engine.begin() as conn:
            conn.execute(insert(REQUESTS), rows)
        rows.clear()

    # Pending requests arrive over the past two hours under one rule (one ladder: remind at
    # 3 h, deny at 4 h), so their next steps fall due one to three hours from now.
    now = datetime.now(UTC)
    background = total - 2 * sample
    ladder = (
        EscalationStep(timedelta(hours=3), remind=True),
        EscalationStep(timedelta(hours=4), deny=True),
    )
    for i in range(background):
        created = now - timedelta(hours=2) + timedelta(hours=2) * (i / background)
        rows.append(mapping.from_request(pending(created, ladder, "bench.background")))
        if len(rows) == 5000:
            flush()
    flush()
    # The samples go in last, when the time left before their window is known: a rule that
    # reminds at 5 min and denies 5 s later, for requests created 5 min before the window.
    first = datetime.now(UTC) + timedelta(seconds=STARTUP_BUDGET)
    second = first + timedelta(seconds=window + DENY_AFTER + 3 + STARTUP_BUDGET)
    remind = timedelta(minutes=5)
    ladder = (
        EscalationStep(remind, remind=True),
        EscalationStep(remind + timedelta(seconds=DENY_AFTER), deny=True),
    )
    for start, tool in ((first, "bench.first"), (second, "bench.second")):
        for i in range(sample):
            created = start + timedelta(seconds=window * i / sample) - remind
            rows.append(mapping.from_request(pending(created, ladder, tool)))
    flush()
    await store.close()
    return first, second


# ---------------------------------------------------------------------- the server (child)


async def serve(config: str, until: float, spawned: float, horizon: float) -> None:
    from adapters.escalation import mount
    from adapters.main import build
    from bot.escalation import StepRun
    from bot.scheduler import Scheduler
    from bot.settings import load_settings

    runtime = await build(load_settings(config), adapters=False, mounts=[mount])
    scheduler = runtime.part(Scheduler)
    if horizon > 0:
        scheduler.horizon = timedelta(seconds=horizon)
    late: list[float] = []

    def observe(request_id: str, run: StepRun) -> None:
        late.append((datetime.now(UTC) - run.due).total_seconds())

    scheduler.observer = observe
    started = time.time()
    count = await scheduler.start()
    now = time.time()
    sweeping = asyncio.get_running_loop().create_task(scheduler.sweep_forever())
    current, peak = rss_mb()
    emit(
        event="ready",
        timers=count,
        rebuild_s=round(now - started, 2),
        since_spawn_s=round(now - spawned, 2),
        rss_mb=round(current, 1),
        peak_mb=round(peak, 1),
    )
    await asyncio.sleep(max(0.0, until - time.time()))
    current, peak = rss_mb()
    ordered = sorted(late)
    emit(
        event="fired",
        steps=len(ordered),
        p50_s=round(statistics.median(ordered), 3) if ordered else None,
        p99_s=round(ordered[int(len(ordered) * 0.99) - 1], 3) if ordered else None,
        max_s=round(ordered[-1], 3) if ordered else None,
        timers_left=scheduler.count(),
        rss_mb=round(current, 1),
        peak_mb=round(peak, 1),
    )
    await sweeping  # stay up until killed


# ---------------------------------------------------------------------- orchestration


def run_server(
    config: Path, until: datetime, horizon: float
) -> tuple[subprocess.Popen[str], list[dict[str, Any]]]:
    spawned = time.time()
    child = [str(config), str(until.timestamp()), str(spawned), str(horizon)]
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", *child],
        stdout=subprocess.PIPE,
        text=True,
    )
    reports: list[dict[str, Any]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        reports.append(json.loads(line))
        if reports[-1]["event"] == "fired":
            break
    return proc, reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=3000)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--database", help="database URL (default: SQLite in a temp folder)")
    parser.add_argument(
        "--horizon",
        type=float,
        default=0,
        help="seconds ahead that timers are APScheduler jobs (default: the scheduler's own; "
        "86400 makes every one of the timers a job)",
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        config, until, spawned, horizon = args.child
        asyncio.run(serve(config, float(until), float(spawned), float(horizon)))
        return

    with tempfile.TemporaryDirectory(prefix="signoff-bench-timers-") as tmp:
        root = Path(tmp)
        url = args.database or f"sqlite:///{root / 'signoff.db'}"
        config = write_home(root, url)
        t = time.perf_counter()
        first, second = asyncio.run(populate(url, args.pending, args.sample, args.window))
        print(f"inserted {args.pending:,} pending requests in {time.perf_counter() - t:.1f}s")
        tail = timedelta(seconds=args.window + DENY_AFTER + 2)

        proc, one = run_server(config, first + tail, args.horizon)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc, two = run_server(config, second + tail, args.horizon)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    ready1, fired1 = one
    ready2, fired2 = two
    rss = max(r["rss_mb"] for r in (ready1, fired1, ready2, fired2))
    p99 = max(fired1["p99_s"] or 0, fired2["p99_s"] or 0)
    print(f"\n{'what':<46}{'measured':>14}{'target':>12}")
    rows = [
        ("timers rebuilt at start", f"{ready1['timers']:,}", ""),
        ("rebuild time, first start (s)", ready1["rebuild_s"], ""),
        ("RSS after rebuild (MB)", ready1["rss_mb"], ""),
        ("RSS while firing (MB, max of both processes)", rss, "<= 300"),
        ("peak RSS (MB)", max(fired1["peak_mb"], fired2["peak_mb"]), ""),
        ("steps fired, window 1", fired1["steps"], ""),
        ("lateness p50 / max, window 1 (s)", f"{fired1['p50_s']} / {fired1['max_s']}", ""),
        ("lateness p99, window 1 (s)", fired1["p99_s"], "<= 1"),
        ("after kill -9: timers back", f"{ready2['timers']:,}", ""),
        ("after kill -9: process start -> all timers (s)", ready2["since_spawn_s"], "<= 5"),
        ("after kill -9: rebuild alone (s)", ready2["rebuild_s"], ""),
        ("steps fired, window 2", fired2["steps"], ""),
        ("lateness p50 / max, window 2 (s)", f"{fired2['p50_s']} / {fired2['max_s']}", ""),
        ("lateness p99, window 2 (s)", fired2["p99_s"], "<= 1"),
    ]
    for what, value, target in rows:
        print(f"{what:<46}{value!s:>14}{target:>12}")
    ok = rss <= 300 and p99 <= 1 and ready2["since_spawn_s"] <= 5
    print("\nall targets met" if ok else "\nTARGET MISSED")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
