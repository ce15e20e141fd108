"""Email channel latency (issue 17): confirm request → approval message accepted by the SMTP
server. Target p50 ≤ 100 ms. (Not ``bench/email.py``: run as a script, that name would shadow
the standard library's ``email`` package.)

Run: .venv/bin/python bench/email_delivery.py [--requests 200]

Starts ``signoff serve`` (agent API + email channel, SQLite, console off) as its own process
on a loopback port, with ``email.smtp_url`` pointing at a real SMTP server (``aiosmtpd``)
running in this process. An agent POSTs confirm requests one after another; the time runs from
sending the request to the moment the SMTP server has accepted the message's DATA (one member
gets each message).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fakes.smtp_server import SmtpServer
from bench.serving import add_agent, free_port, serve, wait_ready, write_home
from bench.stats import percentile

POLICY = """\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {name: bench-email, version: "1"}
people:
  alice: {email: alice@example.com}
groups:
  finance: {members: [alice], email: {}}
defaults: {unknown_tool: confirm, sla: 15m, approvers: {groups: [finance]}}
rules:
  - {name: large-transfer, tool: payments.transfer, tier: confirm, approvers: {groups: [finance]}}
"""


async def run(requests: int) -> None:
    smtp = SmtpServer()
    smtp.start()
    inbox = smtp.inbox
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        extra = (
            f'email: {{smtp_url: "{smtp.url}", from: signoff@example.com}}\n'
            "console: {enabled: false}\nlogging: {level: WARNING}\n"
        )
        config = write_home(Path(tmp), policy=POLICY, port=port, extra=extra)
        token = add_agent(config)
        proc = serve(config)
        base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
        body = {"tool": "payments.transfer", "arguments": {"amount": 25_000, "to": "acct-1"}}
        loop = asyncio.get_running_loop()
        try:
            async with aiohttp.ClientSession() as http:
                await wait_ready(http, base, proc)
                samples: list[float] = []
                for i in range(requests + 1):  # the first one warms up
                    t0 = loop.time()
                    async with http.post(f"{base}/v1/requests", json=body, headers=auth) as r:
                        assert r.status == 201, await r.text()
                    await inbox.wait_for(i + 1)
                    if i:
                        samples.append((inbox.arrivals[i] - t0) * 1000)
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 20)
            smtp.stop()
    load = os.getloadavg()[0]
    print(
        f"confirm request -> email accepted by SMTP ({requests} requests, load {load:.1f} on "
        f"{os.cpu_count()} cores): p50 {percentile(samples, 0.5):.1f} ms, "
        f"p90 {percentile(samples, 0.9):.1f} ms, p99 {percentile(samples, 0.99):.1f} ms "
        "(target p50 <= 100 ms)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    asyncio.run(run(parser.parse_args().requests))
