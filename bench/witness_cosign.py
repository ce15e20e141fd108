"""Cosigning runs beside the log (SPEC §7, issue 12 "Numbers"): auto-tier latency over HTTP
with no witness, with a real ``signoff witness serve``, and with a witness that takes 2 s to
answer. Each run sends auto-tier requests at a fixed rate (``BENCH_RATE``, default 1,000
req/s, for ``BENCH_SECONDS``) to a fresh ``signoff serve`` and prints p50/p99, and how far
the served checkpoint got cosigned. Figures depend on the machine's load: compare the three
lines of one run, not numbers across machines.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from aiohttp import web

from bench.http_auto import LeanClient, wait_ready
from bench.serving import SIGNOFF, free_port, init_home, quiet_env
from bench.stats import percentile

RATE = int(os.environ.get("BENCH_RATE", "1000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
NAME = "bench.witness/w1"


def witness_home(root: Path, cfg: Path) -> tuple[str, int]:
    """``signoff witness init`` trusting ``cfg``'s log; (witness vkey, port)."""
    port = free_port()
    out = subprocess.run(
        [SIGNOFF, "--config", str(cfg), "witness", "init", str(root), "--name", NAME,
         "--port", str(port)],
        capture_output=True, text=True, check=True, env=quiet_env(),
    )  # fmt: skip
    return out.stdout.strip().splitlines()[-1].removeprefix("witness key: "), port


def configure(cfg: Path, port: int, vkey: str) -> None:
    cfg.write_text(
        cfg.read_text().replace(
            "log:\n",
            f'log:\n  witnesses:\n    - {{name: {NAME}, url: "http://127.0.0.1:{port}", '
            f'key: "{vkey}"}}\n  witness_timeout: 5s\n',
        )
    )


async def slow_witness(port: int) -> web.AppRunner:
    async def add_checkpoint(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(status=503, text="busy\n")

    app = web.Application()
    app.router.add_post("/add-checkpoint", add_checkpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def measure(label: str, mode: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg, port = init_home(Path(tmp))
        token = (cfg.parent / "demo-agent.token").read_text().strip()
        extra: list[subprocess.Popen[bytes]] = []
        slow = None
        if mode == "witness":
            vkey, wport = witness_home(Path(tmp) / "witness", cfg)
            configure(cfg, wport, vkey)
            extra.append(
                subprocess.Popen(
                    [
                        SIGNOFF,
                        "witness",
                        "serve",
                        "--config",
                        str(Path(tmp) / "witness" / "witness.yaml"),
                    ],
                    env=quiet_env(),
                    stderr=subprocess.DEVNULL,
                )
            )
            await wait_ready(wport)
        elif mode == "slow":
            vkey, wport = witness_home(Path(tmp) / "witness", cfg)
            configure(cfg, wport, vkey)
            slow = await slow_witness(wport)
        proc = subprocess.Popen(
            [SIGNOFF, "--config", str(cfg), "serve"], env=quiet_env(), stderr=subprocess.DEVNULL
        )
        try:
            await wait_ready(port)
            await LeanClient(port, token, b'{"tool":"a.read","arguments":{}}').paced(500, 1.0)
            client = LeanClient(port, token, b'{"tool":"crm.read","arguments":{"id":1}}')
            ms = [x * 1000 for x in await client.paced(RATE, SECONDS)]
            await asyncio.sleep(1.5)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/log/checkpoint") as resp:
                note = resp.read().decode()
            size = note.split("\n")[1]
            cosigned = f"\u2014 {NAME} " in note
            print(
                f"{label:<28} n={len(ms)} p50={statistics.median(ms):.2f} ms "
                f"p99={percentile(ms, 0.99):.2f} ms; served checkpoint size {size}, "
                f"cosigned={'yes' if cosigned else 'no'} (statuses {client.statuses})"
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            for p in extra:
                p.terminate()
                p.wait(timeout=10)
            if slow is not None:
                await slow.cleanup()


async def main() -> None:
    print(f"auto-tier at {RATE} req/s for {SECONDS:.0f}s, one server process, loopback")
    await measure("no witness", "none")
    await measure("signoff witness serve", "witness")
    await measure("witness answering in 2 s", "slow")


if __name__ == "__main__":
    asyncio.run(main())
