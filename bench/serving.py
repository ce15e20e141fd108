"""What the bench scripts that run a real ``signoff serve`` share: the ``signoff`` command,
a free loopback port, a fresh ``signoff init`` home on it, and an environment without the
chat/paging credentials a developer may have exported (so no adapter reaches out)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

SIGNOFF = str(Path(sys.executable).with_name("signoff"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def init_home(root: Path) -> tuple[Path, int]:
    """``signoff init`` in ``root/home``, listening on a free port and logging warnings
    only; returns the config file and the port. The demo agent's token is in
    ``home/demo-agent.token``."""
    home = root / "home"
    subprocess.run([SIGNOFF, "init", str(home)], check=True, capture_output=True)
    port = free_port()
    cfg = home / "signoff.yaml"
    cfg.write_text(
        cfg.read_text().replace("port: 8080", f"port: {port}") + "logging: {level: WARNING}\n"
    )
    return cfg, port


def quiet_env() -> dict[str, str]:
    """This process's environment without SLACK_*, TEAMS_* and PAGERDUTY_* variables."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TEAMS_", "PAGERDUTY_"))
    }
