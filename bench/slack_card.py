"""Slack card latency and click acknowledgement under load (SPEC §9).

Run: .venv/bin/python bench/slack_card.py [--requests 200] [--rounds 10] [--clicks 50]

Starts ``signoff serve`` (agent API + Slack adapter, SQLite, console off) as its own process on
a loopback port, with ``slack.api_base_url`` pointing at the fake Slack Web API from
``tests/fakes``, which runs in this process together with the load generator (as Slack would
be: outside the server). Then:

1. confirm-tier request → card posted: an agent POSTs /v1/requests one after another; the time
   runs from sending the request to the moment the fake receives ``chat.postMessage`` with the
   card. Target p50 ≤ 25 ms.
2. click → ack: ``--clicks`` approvers click Approve on ``--clicks`` pending cards at the same
   moment, with payloads signed as Slack signs them; the time runs from sending the click to
   the HTTP answer. The decisions, card updates and thread replies run in the server after
   the acks and compete with them. Repeated ``--rounds`` times. Target p99 ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.slack.cards import ACTION_APPROVE
from bench.fakes.slack_api import Call, FakeSlack
from bench.fakes.slack_payloads import block_actions, form, sign
from bench.serving import add_agent, free_port, serve, wait_ready, write_home
from bench.stats import percentile

SECRET = "bench-signing-secret"
_REQUEST_ID = re.compile(r"request `([0-9a-f-]{36})`")


def policy(approvers: list[str]) -> str:
    users = ", ".join(approvers)
    return f"""\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {{name: bench, version: "1"}}
groups:
  finance:
    slack: {{channel: C0FINANCE, users: [{users}]}}
defaults: {{unknown_tool: confirm, sla: 15m, approvers: {{groups: [finance]}}}}
rules:
  - name: large-transfer
    tool: payments.transfer
    tier: confirm
    approvers: {{groups: [finance]}}
"""


class CardClock:
    """Records when the fake receives each request's card."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self.updates = 0
        self.updated = asyncio.Event()

    def __call__(self, call: Call) -> None:
        if call.method == "chat.update" and call.answer["ok"]:
            self.updates += 1
            self.updated.set()
        if call.method != "chat.postMessage" or "thread_ts" in call.args or not call.answer["ok"]:
            return
        match = _REQUEST_ID.search(str(call.args.get("blocks")))
        if match is None:
            return
        rid = match.group(1)
        self.arrived[rid] = call.at
        future = self.waiting.pop(rid, None)
        if future is not None and not future.done():
            future.set_result(call.at)

    async def wait(self, rid: str) -> float:
        if rid in self.arrived:
            return self.arrived[rid]
        future = asyncio.get_running_loop().create_future()
        self.waiting[rid] = future
        return await asyncio.wait_for(future, 10)


def start_server(
    home: Path, fake: FakeSlack, approvers: list[str]
) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    extra = (
        "slack:\n"
        f"  bot_token: {fake.token}\n"
        f"  signing_secret: {SECRET}\n"
        f"  api_base_url: {fake.base_url}\n"
        "console: {enabled: false}\n"
        "logging: {level: WARNING}\n"
    )
    config = write_home(home, policy=policy(approvers), port=port, extra=extra)
    token = add_agent(config)
    proc = serve(config)
    return proc, f"http://127.0.0.1:{port}", token


async def run(options: argparse.Namespace) -> None:
    approvers = [f"U0BENCH{i:03d}" for i in range(options.clicks)]
    fake = FakeSlack()
    await fake.start()
    for user in approvers:
        fake.add_user(user, user.lower(), f"{user.lower()}@example.com")
    cards = CardClock()
    fake.observers.append(cards)

    with tempfile.TemporaryDirectory() as tmp:
        proc, base, token = start_server(Path(tmp), fake, approvers)
        auth = {"Authorization": f"Bearer {token}"}
        body = {
            "tool": "payments.transfer",
            "arguments": {"amount": 25_000, "to": "acct-1"},
            "justification": "bench",
            "context": {"requested_by": "someone@example.com"},
        }
        try:
            connector = aiohttp.TCPConnector(limit=2 * options.clicks)
            async with aiohttp.ClientSession(connector=connector) as http:
                await wait_ready(http, base, proc)

                async def submit() -> tuple[str, float]:
                    t0 = time.monotonic()
                    async with http.post(f"{base}/v1/requests", json=body, headers=auth) as r:
                        assert r.status == 201, await r.text()
                        rid = str((await r.json())["id"])
                    return rid, t0

                async def click(rid: str, user: str) -> float:
                    raw = form(block_actions(ACTION_APPROVE, rid, user=user))
                    headers = sign(SECRET, raw)
                    t0 = time.perf_counter()
                    async with http.post(f"{base}/slack/events", data=raw, headers=headers) as r:
                        await r.read()
                        assert r.status == 200, r.status
                    return time.perf_counter() - t0

                async def settle(updates: int) -> None:
                    async with asyncio.timeout(60):
                        while cards.updates < updates:
                            cards.updated.clear()
                            await cards.updated.wait()

                # warm up: first request and click (bolt's auth.test), connection pools
                rid, _ = await submit()
                await cards.wait(rid)
                await click(rid, approvers[0])
                await settle(1)

                card_ms: list[float] = []
                for _ in range(options.requests):
                    rid, t0 = await submit()
                    card_ms.append((await cards.wait(rid) - t0) * 1000)

                ack_ms: list[float] = []
                for round_ in range(options.rounds):
                    pending = [await submit() for _ in approvers]
                    for rid, _ in pending:
                        await cards.wait(rid)
                    pairs = zip(pending, approvers, strict=True)
                    acks = await asyncio.gather(*(click(rid, user) for (rid, _), user in pairs))
                    ack_ms += [a * 1000 for a in acks]
                    await settle(1 + (round_ + 1) * len(approvers))
                decided = cards.updates
        finally:
            proc.terminate()
            # wait without blocking this loop: the fake Slack must keep answering meanwhile
            await asyncio.to_thread(proc.wait, 20)
            await fake.close()

    p50 = percentile(card_ms, 0.5)
    print(
        f"slack_card: confirm request -> card posted to the local fake: p50 {p50:.1f} ms, "
        f"p99 {percentile(card_ms, 0.99):.1f} ms over {len(card_ms)} requests "
        f"-> target p50 <= 25 ms {'MET' if p50 <= 25 else 'MISSED'}"
    )
    p99 = percentile(ack_ms, 0.99)
    print(
        f"slack_card: click -> ack with {options.clicks} concurrent clicks: p50 "
        f"{percentile(ack_ms, 0.5):.1f} ms, p99 {p99:.1f} ms, max {max(ack_ms):.1f} ms over "
        f"{len(ack_ms)} clicks ({decided} cards updated after the acks) "
        f"-> target p99 <= 100 ms {'MET' if p99 <= 100 else 'MISSED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="sequential card requests")
    parser.add_argument("--clicks", type=int, default=50, help="concurrent clicks per round")
    parser.add_argument("--rounds", type=int, default=10)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
