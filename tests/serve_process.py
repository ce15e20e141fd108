"""A real ``signoff serve`` process for end-to-end, conformance and chaos tests: a fresh
``signoff init`` home on a free port (optionally another database and policy), started as a
user would start it and waited for until ``/readyz`` answers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

SIGNOFF = str(Path(sys.executable).with_name("signoff"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def quiet_env(**extra: str) -> dict[str, str]:
    """This environment without SLACK_*, TEAMS_* and PAGERDUTY_* (no adapter reaches out)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TEAMS_", "PAGERDUTY_"))
    }
    env.update(extra)
    return env


def init_home(
    root: Path,
    *,
    database_url: str | None = None,
    policy: str | None = None,
    extra_config: str = "",
) -> Path:
    """``signoff init root/home`` on a free port; returns the config file. ``policy``
    replaces the example policy; ``extra_config`` is appended to ``signoff.yaml``."""
    home = root / "home"
    subprocess.run([SIGNOFF, "init", str(home)], check=True, capture_output=True)
    port = free_port()
    config = home / "signoff.yaml"
    text = (
        config.read_text()
        .replace("port: 8080", f"port: {port}")
        .replace("http://127.0.0.1:8080", f"http://127.0.0.1:{port}")
    )
    if database_url is not None:
        text = text.replace('url: "sqlite:///./signoff.db"', f'url: "{database_url}"')
    config.write_text(text + extra_config)
    if policy is not None:
        (home / "policies" / "example.yaml").write_text(policy)
    return config


def port_of(config: Path) -> int:
    return int(config.read_text().split("port: ", 1)[1].split()[0])


def http(
    method: str, url: str, body: object = None, token: str | None = None, timeout: float = 30
) -> tuple[int, Any]:
    """(status, parsed JSON body, or its text when it is not JSON)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw or b"null")
        except ValueError:
            return err.code, raw.decode(errors="replace")


class Server:
    """One ``signoff serve`` process; its output goes to ``serve.log`` beside the config."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.port = port_of(config)
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = env if env is not None else quiet_env()
        self.log_path = config.parent / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [SIGNOFF, "--config", str(self.config), "serve"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.config.parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reap()
                raise RuntimeError(f"signoff serve exited early:\n{self.log_path.read_text()}")
            try:
                if http("GET", self.base + "/readyz", timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"signoff serve did not become ready:\n{self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL: the crash the chaos tests inject."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self._reap()

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait (kill past ``timeout``); returns the exit code."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        code = self.proc.poll() if self.proc is not None else None
        self._reap()
        return code

    def _reap(self) -> None:
        if self.proc is not None:
            self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def signoff(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``signoff --config <this home> ARGS`` to completion."""
        return subprocess.run(
            [SIGNOFF, "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            input=stdin,
            env=self.env,
            cwd=self.config.parent,
            check=False,
        )
