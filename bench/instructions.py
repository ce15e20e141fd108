"""Instructions per auto-tier request, counted by callgrind: an A/B between two commits that
wall-clock timing on a shared 2-core box cannot resolve.

``signoff serve`` runs under ``valgrind --tool=callgrind --instr-atstart=no`` on a fresh
``signoff init`` home; after ``--warmup`` auto-tier POSTs (uninstrumented, then 50 more with
instrumentation on so every code path is translated), the counters are zeroed, ``--requests``
sequential auto-tier ``POST /v1/requests`` are sent over one keep-alive connection, and the
dump's total (every thread of the server: the event loop, the store's threads) is divided by
the request count.

Valgrind slows the server ~50x, so work done per second of wall clock (the escalation sweep,
the change feed, policy-file polling, the checkpoint issued each second) would be charged to
each request many times over. Policy polling and per-second checkpoints are turned off (unless
``--defaults``), and what the server does over an idle spell right after is subtracted at its
rate: that subtraction varies with the machine's load, so runs differ by up to ~10 %; compare
ranges of a few runs.

    python bench/instructions.py                       # this tree, its own example policy
    python bench/instructions.py --commit f83a76e      # another commit (a git worktree in /tmp)
    python bench/instructions.py --policy-from f83a76e # this tree with f83a76e's example policy
    python bench/instructions.py --defaults            # keep init's polling and checkpoints
    python bench/instructions.py --reference floor     # the contract's floor (floor_server.py)
    python bench/instructions.py --reference bare      # a bare aiohttp handler (bare_server.py)

The two references are the servers ``workers_cpu.py`` times beside signoff, counted the same
way: signoff's count over the floor's is how much signoff adds to what the evidence contract
costs, a ratio the VM's drift does not move.

``--policy-from REV`` installs ``policies/example.yaml`` as it was at REV (``WORKTREE`` means
this tree's file). An older commit runs with this venv's packages and its own code.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
BODY = b'{"tool":"crm.read","arguments":{"id":1}}'
IDLE_SECONDS = 10.0
LAUNCH = "import sys; from adapters.cli import main; sys.exit(main())"


def tree_for(commit: str | None, tmp: Path) -> Path:
    """The source tree to run: this one, or ``commit`` checked out as a detached worktree."""
    if commit is None:
        return ROOT
    where = tmp / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(where), commit],
        check=True,
    )
    return where


def policy_text(rev: str) -> str:
    if rev == "WORKTREE":
        return (ROOT / "policies" / "example.yaml").read_text()
    return subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:policies/example.yaml"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def signoff(tree: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", LAUNCH, *args]


def env_for(tree: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TEAMS_", "PAGERDUTY_"))
    }
    env["PYTHONPATH"] = str(tree)
    env["PYTHONHASHSEED"] = "0"
    return env


class Client:
    """One keep-alive connection; a request is sent and its whole answer read."""

    def __init__(self, port: int, token: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.request = (
            b"POST /v1/requests HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n"
            b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
        )
        self.buffer = b""

    def post(self) -> int:
        self.sock.sendall(self.request)
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                head = self.buffer[:end].lower()
                at = head.find(b"\ncontent-length:")
                length = int(head[at + 16 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
                if len(self.buffer) >= end + 4 + length:
                    status = int(head[9:12])
                    self.buffer = self.buffer[end + 4 + length :]
                    return status
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SystemExit("server closed the connection")
            self.buffer += chunk


def wait_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 600) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit("signoff serve exited early (see its stderr above)")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("signoff serve did not start")


def control(pid: int, *args: str) -> str:
    return subprocess.run(
        ["callgrind_control", *args, str(pid)], check=True, capture_output=True, text=True
    ).stdout


class Measured(NamedTuple):
    raw: float  # instructions per request, everything the server did while they ran
    net: float  # minus the idle server's rate over the same time
    seconds: float


def server_command(
    tree: Path, policy: str | None, tmp: Path, defaults: bool, reference: str | None
) -> tuple[list[str], int, str]:
    """The server to measure (its command, port and agent token): ``signoff serve`` on a fresh
    ``signoff init`` home, or with ``reference`` one of the reference servers
    ``workers_cpu.py`` measures beside it (``bench/floor_server.py``, ``bench/bare_server.py``),
    which take no token."""
    port = free_port()
    if reference is not None:
        script = Path(__file__).with_name(f"{reference}_server.py")
        extra = [str(tmp / "floor.db")] if reference == "floor" else []
        return [sys.executable, str(script), str(port), *extra], port, "-"
    home = tmp / "home"
    subprocess.run(signoff(tree, "init", str(home)), env=env_for(tree), check=True, cwd=tmp)
    if policy is not None:
        (home / "policies" / "example.yaml").write_text(policy)
    cfg = home / "signoff.yaml"
    text = cfg.read_text().replace("port: 8080", f"port: {port}")
    if not defaults:  # no policy-file polling, no checkpoint per second: per-second work
        text = text.replace("  paths: [./policies]\n", "  paths: [./policies]\n  watch: false\n")
        text = text.replace("\nlog:\n", "\nlog:\n  checkpoint_interval: 1h\n")
    cfg.write_text(text + "logging: {level: WARNING}\n")
    token = (home / "demo-agent.token").read_text().strip()
    return signoff(tree, "--config", str(cfg), "serve"), port, token


def measure(
    tree: Path,
    policy: str | None,
    requests: int,
    warmup: int,
    tmp: Path,
    defaults: bool,
    reference: str | None = None,
) -> Measured:
    server, port, token = server_command(tree, policy, tmp, defaults, reference)
    out = tmp / "callgrind.out"
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        *os.environ.get("CALLGRIND_EXTRA", "").split(),
        f"--callgrind-out-file={out}.%p",
        *server,
    ]
    proc = subprocess.Popen(cmd, env=env_for(tree), cwd=tmp, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        client = Client(port, token)
        for _ in range(warmup):
            if client.post() // 100 != 2:
                raise SystemExit("warm-up request was not answered 2xx")
        control(proc.pid, "-i", "on")
        for _ in range(50):
            client.post()
        control(proc.pid, "-z")
        statuses: dict[int, int] = {}
        started = time.monotonic()
        for _ in range(requests):
            status = client.post()
            statuses[status] = statuses.get(status, 0) + 1
        busy = time.monotonic() - started
        control(proc.pid, "-d")
        if set(statuses) != {201} and set(statuses) != {200}:
            raise SystemExit(f"answers were not all 2xx: {statuses}")
        # What the server spends with no request at all (the escalation sweep, the change
        # feed: wall-clock timers, which valgrind's slowness inflates) is measured over an
        # idle spell and subtracted at its rate.
        control(proc.pid, "-z")
        idle = min(busy, IDLE_SECONDS)
        time.sleep(idle)
        control(proc.pid, "-d")
    finally:
        proc.terminate()
        proc.wait(120)
    loaded, quiet = dump_totals(tmp)[:2]
    background = quiet * busy / idle
    return Measured(loaded / requests, (loaded - background) / requests, busy)


def dump_totals(tmp: Path) -> list[int]:
    """The totals of the dumps asked for (not the one at exit), in the order taken."""
    found: list[tuple[int, int]] = []
    for dump in tmp.glob("callgrind.out.*.*"):
        text = dump.read_text(errors="replace")
        total = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
        if total and re.search(r"^desc: Trigger: (Client Request: )?dump", text, re.M):
            found.append((int(dump.name.rsplit(".", 1)[1]), int(total.group(1))))
    if len(found) != 2:
        raise SystemExit(f"expected two callgrind dumps in {tmp}, found {found}")
    return [total for _, total in sorted(found)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commit", help="measure this commit instead of the working tree")
    parser.add_argument(
        "--policy-from", help="policies/example.yaml as of this revision (WORKTREE: this tree's)"
    )
    parser.add_argument(
        "--defaults",
        action="store_true",
        help="keep signoff init's policy polling and 1 s checkpoints (wall-clock work that "
        "valgrind's slowness charges to each request many times over)",
    )
    parser.add_argument(
        "--reference",
        choices=["floor", "bare"],
        help="measure a reference server instead of signoff: floor_server.py (the evidence "
        "contract's own work written straight through) or bare_server.py (a bare aiohttp "
        "JSON handler)",
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print(
            "instructions: valgrind is not installed (apt-get install valgrind); nothing measured"
        )
        return
    with tempfile.TemporaryDirectory(dir=os.environ.get("KEEP_DIR")) as name:
        tmp = Path(name)
        tree = tree_for(args.commit, tmp)
        try:
            policy = policy_text(args.policy_from) if args.policy_from else None
            run = tmp / "run"
            run.mkdir()
            got = measure(
                tree, policy, args.requests, args.warmup, run, args.defaults, args.reference
            )
        finally:
            if args.commit is not None:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                    check=False,
                )
    if args.reference is not None:
        what = {"floor": "floor_server.py (the contract's own work)", "bare": "bare_server.py"}
        subject = f"{what[args.reference]}:"
    else:
        subject = (
            f"{args.commit or 'working tree'} with the example policy of "
            f"{args.policy_from or (args.commit or 'the tree')}:"
        )
    print(
        f"{subject} {got.net / 1e6:.3f} M instructions "
        f"per auto-tier request ({got.raw / 1e6:.3f} M before subtracting the idle server's "
        f"rate over the {got.seconds:.0f} s the requests took; {args.requests} sequential "
        f"POST /v1/requests {BODY.decode()}, callgrind, every server thread"
        f"{'; init defaults: policy polling, 1 s checkpoints' if args.defaults else ''})"
    )


if __name__ == "__main__":
    main()
