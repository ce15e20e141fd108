"""Server CPU per auto-tier request at saturation, one worker and ``--workers 2`` (SPEC §9:
≤ 0.2 ms; two workers: requests within 20 % of an even share, CPU per request ≤ 1.1 x one
worker's).

Each run: a fresh ``signoff init`` home, ``signoff serve`` (then ``--workers 2``) saturated by
``wrk`` (a C load generator, ``apt-get install wrk``: a Python client would eat a core of a
small box) with auto-tier POSTs for ``SIGNOFF_BENCH_SECONDS`` (default 15). Server CPU is
read from ``/proc/PID/stat`` (user + system time of every server process) before and after,
so it is measured, not inferred, and a loaded machine distorts it less than throughput.
Requests per worker come from each worker's own Prometheus counter (``/metrics`` asked over
fresh connections until both workers have answered).

With the client on the same 2-core machine, two workers cannot show twice the throughput; the
CPU per request is what predicts scaling on a bigger machine.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.serving import init_home, serve

SECONDS = float(os.environ.get("SIGNOFF_BENCH_SECONDS", "15"))
CONNECTIONS = 64
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"tool":"crm.read","arguments":{"id":3}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("SIGNOFF_BENCH_TOKEN")
"""
COUNTER = re.compile(r'^signoff_requests_total\{[^}]*tier="auto"[^}]*\} ([\d.e+]+)$', re.M)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
        return [int(p) for p in fh.read().split()]


def get(url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Connection": "close"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310 - loopback
        return resp.status, resp.read().decode()


def wait_ready(base: str, proc: subprocess.Popen[bytes], workers: int) -> list[int]:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit("signoff serve exited early")
        try:
            pids = [proc.pid] if workers == 1 else children(proc.pid)
            if len(pids) == workers and get(base + "/readyz")[0] == 200:
                time.sleep(1.0)  # every worker is up, not just the first
                return pids
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("signoff serve did not get ready")


def per_worker_counts(base: str, workers: int) -> list[float]:
    seen: set[float] = set()
    for _ in range(200):
        found = COUNTER.findall(get(base + "/metrics")[1])
        seen.add(sum(float(v) for v in found))
        if len(seen) >= workers:
            break
    return sorted(seen)


class Run(TypedDict):
    """One saturation run, as ``main`` prints it."""

    rps: float
    requests: int
    non2xx: int
    cpu_ms: float
    cpu_share: list[float]
    counts: list[float]


def run(workers: int, tmp: Path) -> Run:
    cfg, port = init_home(tmp / f"w{workers}")
    token = (cfg.parent / "demo-agent.token").read_text().strip()
    base = f"http://127.0.0.1:{port}"
    proc = serve(cfg, workers)
    try:
        pids = wait_ready(base, proc, workers)
        script = tmp / "post.lua"
        script.write_text(WRK_SCRIPT)
        before = {pid: cpu_seconds(pid) for pid in pids}
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{CONNECTIONS}",
                f"-d{SECONDS:.0f}s",
                "-s",
                str(script),
                base + "/v1/requests",
            ],
            env={**os.environ, "SIGNOFF_BENCH_TOKEN": token},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        cpu = {pid: cpu_seconds(pid) - before[pid] for pid in pids}
        total = re.search(r"(\d+) requests in", out)
        rps = re.search(r"Requests/sec:\s*([\d.]+)", out)
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if total is None or rps is None:
            raise SystemExit(f"wrk output not understood:\n{out}")
        counts = per_worker_counts(base, workers) if workers > 1 else []
    finally:
        proc.terminate()
        proc.wait(30)
    requests = int(total.group(1))
    return {
        "rps": float(rps.group(1)),
        "requests": requests,
        "non2xx": int(bad.group(1)) if bad else 0,
        "cpu_ms": sum(cpu.values()) * 1000 / requests,
        "cpu_share": [round(c / sum(cpu.values()) * 100, 1) for c in cpu.values()],
        "counts": counts,
    }


def main() -> None:
    if shutil.which("wrk") is None:
        print("workers_cpu: wrk is not installed (apt-get install wrk); nothing measured")
        return
    with tempfile.TemporaryDirectory() as tmp:
        one = run(1, Path(tmp))
        two = run(2, Path(tmp))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"auto tier at saturation, 1 worker (wrk, {CONNECTIONS} connections, {SECONDS:.0f} s): "
        f"{one['rps']:,.0f} req/s, server CPU {one['cpu_ms']:.3f} ms/request "
        f"(target <= 0.2 ms), non-2xx {one['non2xx']}"
    )
    counts = two["counts"]
    total = math.fsum(counts)
    spread = ""
    if len(counts) == 2 and total > 0:
        even = total / 2
        worst = max(abs(c - even) / even for c in counts) * 100
        spread = f"requests per worker {[int(c) for c in counts]} ({worst:.1f} % from even"
        spread += ", target <= 20 %)"
    ratio = two["cpu_ms"] / one["cpu_ms"]
    print(
        f"auto tier at saturation, --workers 2: {two['rps']:,.0f} req/s, server CPU "
        f"{two['cpu_ms']:.3f} ms/request = {ratio:.2f}x one worker's (target <= 1.1x), CPU "
        f"share per worker {two['cpu_share']} %, {spread}, non-2xx {two['non2xx']}; "
        f"load average {load} (the client runs on the same machine)"
    )


if __name__ == "__main__":
    main()
