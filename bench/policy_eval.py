"""Policy evaluation throughput on a 50-rule policy (SPEC §9 target: >= 100,000 evaluations/s).

Run: .venv/bin/python bench/policy_eval.py [--seconds 3]

The policy mixes exact tool names, globs and CEL conditions (numeric comparisons, list
membership, string functions, agent labels); the calls mix matches on first and later rules,
condition errors and unknown tools, so the figure is for a realistic spread, not a best case.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.domain import Agent, ToolCall
from bot.policy.evaluator import evaluate
from bot.policy.loader import load_sources
from bot.policy.model import Policy

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


def build_policy() -> Policy:
    lines = [
        "apiVersion: signoff/v1",
        "kind: ToolPolicy",
        "metadata: {name: bench, version: '1'}",
        "groups:",
        "  ops: {console: {users: [alice]}}",
        "defaults: {unknown_tool: confirm, sla: 15m}",
        "rules:",
    ]
    rules = 0
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per round")
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    policy = build_policy()
    calls = build_calls(10_000)
    agent = Agent(
        id="bench", token_hash="", created_at=datetime.now(UTC), labels={"team": "billing"}
    )
    now = datetime.now(UTC)
    rates = []
    for _ in range(options.rounds):
        done = 0
        start = time.perf_counter()
        deadline = start + options.seconds
        while time.perf_counter() < deadline:
            for call in calls:
                evaluate(policy, call, agent, now)
            done += len(calls)
        rates.append(done / (time.perf_counter() - start))
    best, median = max(rates), statistics.median(rates)
    print(
        f"policy_eval: {len(policy.rules)} rules, {median:,.0f} evaluations/s median "
        f"({1e6 / median:.2f} us/eval), best {best:,.0f}/s over {options.rounds} rounds "
        f"-> target >= 100,000/s {'MET' if median >= 100_000 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
