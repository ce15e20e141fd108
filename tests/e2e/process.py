"""Run ``signoff`` processes as a user would: a home from ``signoff init`` on a free port,
``signoff serve`` started and stopped with signals, JSON over HTTP with the standard library."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.serving import add_agent
from tests.serve_process import SIGNOFF, free_port
from tests.serve_process import quiet_env as clean_env

__all__ = ["Serve", "add_agent", "http", "init_home"]


def http(
    method: str, url: str, body: Any = None, token: str | None = None
) -> tuple[int, Any, dict[str, str]]:
    """(status, parsed JSON or text, headers)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw, status, headers = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        raw, status, headers = err.read(), err.code, dict(err.headers)
    try:
        return status, json.loads(raw or b"null"), headers
    except ValueError:
        return status, raw.decode(), headers


def init_home(root: Path) -> tuple[Path, str]:
    """``signoff init`` into ``root`` on a free port; (config path, base URL)."""
    subprocess.run([SIGNOFF, "init", str(root)], capture_output=True, text=True, check=True)
    port = free_port()
    config = root / "signoff.yaml"
    text = (
        config.read_text()
        .replace("port: 8080", f"port: {port}")
        .replace("http://127.0.0.1:8080", f"http://127.0.0.1:{port}")
    )
    config.write_text(text)
    return config, f"http://127.0.0.1:{port}"


class Serve:
    """One ``signoff serve`` (or any long-running ``signoff`` command) with its output in a file."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [SIGNOFF, *args], stdout=self._log, stderr=subprocess.STDOUT, text=True, env=clean_env()
        )

    def wait_healthy(self, url: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited early:\n{self.output()}")
            try:
                if http("GET", url)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"never became healthy:\n{self.output()}")

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._log.close()
