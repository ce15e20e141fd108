"""Policy evaluation throughput on a 50-rule policy (SPEC §9 target: >= 100,000 evaluations/s;
with sessions on and a 100-call session, issue 16: >= 50,000/s).

Run: .venv/bin/python bench/policy_eval.py [--seconds 3]

The policy mixes exact tool names, globs and CEL conditions (numeric comparisons, list
membership, string functions, signoff helpers, agent labels); the calls mix matches on first and
later rules, condition errors and unknown tools, so the figure is for a realistic spread, not a
best case. The sessions run adds a `sessions` block (three labels, one with a CEL condition)
and a lethal-trifecta rule tried first on every call (49 + 1 = 50 rules); each evaluation
folds the store's summary of a 100-call session (the rows one session query returns) into
the session view, works out the call's labels and evaluates. The store query itself is not
in this figure (see tests/integration/test_sessions.py for its shape).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.domain import Agent, SessionCalls, ToolCall
from bot.policy.evaluator import evaluate
from bot.policy.loader import load_sources
from bot.policy.model import Policy
from bot.policy.session import summarise

SERVICES = [
    "payments",
    "db",
    "email",
    "repos",
    "crm",
    "files",
    "tickets",
    "calendar",
    "hr",
    "infra",
]
CONDITIONS = [
    "args.amount >= 10000",
    'args.env in ["production", "prod-eu"]',
    'args.target.startsWith("main")',
    'agent.labels.team == "billing"',
    "size(args) > 3",
    'args.statement.upperAscii().startsWith("DELETE")',
]
SESSIONS = [
    "sessions:",
    "  key: context.session",
    "  window: 1h",
    "  labels:",
    "    private_data: {tools: ['crm.*', 'hr.*', 'files.*']}",
    "    untrusted_content:",
    "      tools: ['tickets.*', 'calendar.*']",
    "      when: '!fold(args.target).startsWith(\"main\")'",
    "    external_comms: {tools: ['email.*', 'infra.*']}",
]
TRIFECTA = [
    "  - name: lethal-trifecta",
    "    tool: '*'",
    "    when: >-",
    '      "external_comms" in call.labels && "private_data" in session.labels &&',
    '      "untrusted_content" in session.labels',
    "    tier: confirm",
    "    approvers: {groups: [ops]}",
]


def build_policy(sessions: bool = False) -> Policy:
    lines = [
        "apiVersion: signoff/v1",
        "kind: ToolPolicy",
        "metadata: {name: bench, version: '1'}",
        "groups:",
        "  ops: {console: {users: [alice]}}",
        "defaults: {unknown_tool: confirm, sla: 15m}",
        *(SESSIONS if sessions else []),
        "rules:",
        *(TRIFECTA if sessions else []),
    ]
    rules = 1 if sessions else 0
    for service in SERVICES:
        for index, tier in enumerate(["confirm", "block", "notify", "auto"]):
            when = CONDITIONS[(rules + index) % len(CONDITIONS)]
            lines += [
                f"  - name: {service}-{index}",
                f"    tool: {service}.{'write' if index < 2 else 'update'}",
                f"    when: '{when}'",
                f"    tier: {tier}",
            ]
            if tier in ("confirm", "notify"):
                lines.append("    approvers: {groups: [ops]}")
            if tier == "block":
                lines.append("    reason: blocked in bench")
            rules += 1
        if sessions and service == SERVICES[-1]:
            continue  # the trifecta rule took this slot
        lines += [f"  - name: {service}-reads", f"    tool: '{service}.*.read'", "    tier: auto"]
        rules += 1
    assert rules == 50, rules
    return load_sources([("bench.yaml", "\n".join(lines) + "\n")])


def build_calls(count: int) -> list[ToolCall]:
    rng = random.Random(7)
    calls = []
    for _ in range(count):
        service = rng.choice(SERVICES)
        tool = rng.choice([f"{service}.write", f"{service}.update", f"{service}.x.read", "x.y"])
        args = {
            "amount": rng.choice([5, 50_000]),
            "env": rng.choice(["dev", "production"]),
            "target": rng.choice(["main", "feature/x"]),
            "statement": rng.choice(["select 1", "delete from t"]),
        }
        if rng.random() < 0.1:
            del args["amount"]  # condition errors take the strict path
        calls.append(ToolCall(tool=tool, arguments=args, context={"session": "s"}))
    return calls


def session_rows(policy: Policy, calls: list[ToolCall], agent: Agent) -> list[SessionCalls]:
    """What the store's one session query returns for a session of ``calls``: one row per
    distinct label set (labels worked out by the policy, as the server records them)."""
    now = datetime.now(UTC)
    groups: dict[tuple[str, ...], int] = {}
    for call in calls:
        labels = evaluate(policy, call, agent, now).labels
        groups[labels] = groups.get(labels, 0) + 1
    return [SessionCalls(labels, n, "a", "b", now) for labels, n in groups.items()]


def measure(policy: Policy, calls: list[ToolCall], agent: Agent, options: Any,
            session: list[SessionCalls] | None) -> list[tuple[float, float]]:  # fmt: skip
    """(wall-clock rate, CPU-time rate) per round: on a shared machine the CPU-time rate is
    what this process could do with a core to itself."""
    now = datetime.now(UTC)
    rates = []
    for _ in range(options.rounds):
        done = 0
        start, cpu = time.perf_counter(), time.process_time()
        deadline = start + options.seconds
        while time.perf_counter() < deadline:
            if session is None:
                for call in calls:
                    evaluate(policy, call, agent, now)
            else:
                for call in calls:
                    evaluate(policy, call, agent, now, summarise("s", session))
            done += len(calls)
        wall, used = time.perf_counter() - start, time.process_time() - cpu
        rates.append((done / wall, done / used))
    return rates


def report(
    name: str, policy: Policy, rates: list[tuple[float, float]], rounds: int, target: int
) -> None:
    walls = [wall for wall, _ in rates]
    best, median = max(walls), statistics.median(walls)
    cpu = statistics.median(rate for _, rate in rates)
    print(
        f"policy_eval{name}: {len(policy.rules)} rules, {median:,.0f} evaluations/s median "
        f"({1e6 / median:.2f} us/eval), best {best:,.0f}/s over {rounds} rounds "
        f"-> target >= {target:,}/s {'MET' if median >= target else 'MISSED'}; "
        f"by CPU time {cpu:,.0f}/s; load average {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per round")
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    calls = build_calls(10_000)
    agent = Agent(
        id="bench", token_hash="", created_at=datetime.now(UTC), labels={"team": "billing"}
    )
    policy = build_policy()
    report("", policy, measure(policy, calls, agent, options, None), options.rounds, 100_000)
    with_sessions = build_policy(sessions=True)
    rows = session_rows(with_sessions, calls[:100], agent)
    assert with_sessions.sessions is not None and sum(row.count for row in rows) == 100
    rates = measure(with_sessions, calls, agent, options, rows)
    report(" (sessions, 100-call session)", with_sessions, rates, options.rounds, 50_000)


if __name__ == "__main__":
    main()
