"""A newcomer's rough edges, met through the real ``signoff`` command: each mistake gets one
clear line on stderr (no traceback) that says what to do."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.serve_process import SIGNOFF, Server, init_home, quiet_env

pytestmark = pytest.mark.slow


def run(
    config: Path | None, *args: str, stdin: int | None = None
) -> subprocess.CompletedProcess[str]:
    prefix = ["--config", str(config)] if config is not None else []
    return subprocess.run(
        [SIGNOFF, *prefix, *args],
        capture_output=True,
        text=True,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        env=quiet_env(),
        cwd=config.parent if config is not None else None,
        timeout=120,
        check=False,
    )


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return init_home(tmp_path)


def test_a_busy_port_is_one_line_naming_the_port_and_the_port_flag(config: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = config.read_text()
        config.write_text(
            text.replace(f"port: {text.split('port: ')[1].split()[0]}", f"port: {port}")
        )
        proc = run(config, "serve")
    errors = [
        line
        for line in proc.stderr.splitlines()
        if " WARNING " not in line and " INFO " not in line
    ]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert len(errors) == 1, proc.stderr
    assert f"127.0.0.1:{port}" in errors[0] and "already in use" in errors[0]
    assert "--port" in errors[0]


def test_users_add_without_a_terminal_or_password_stdin_is_one_line(config: Path) -> None:
    line = one_line(run(config, "users", "add", "bob"))
    assert "--password-stdin" in line
    piped = subprocess.run(
        [SIGNOFF, "--config", str(config), "users", "add", "bob", "--password-stdin"],
        input="a long enough password 1\n",
        capture_output=True,
        text=True,
        env=quiet_env(),
        check=False,
    )
    assert piped.returncode == 0, piped.stderr


def test_an_unknown_flag_names_the_command_and_the_flag(config: Path) -> None:
    line = one_line(run(None, "--bogus"))
    assert line.startswith("signoff: error:") and "--bogus" in line
    line = one_line(run(config, "audit", "verify", "--bogus"))
    assert line.startswith("signoff audit verify: error:") and "--bogus" in line
    line = one_line(run(config, "serve", "--bogus"))
    assert line.startswith("signoff serve: error:") and "--bogus" in line


def test_a_config_file_with_three_problems_reports_all_three(config: Path) -> None:
    config.write_text(
        config.read_text()
        .replace("port: ", "port: not-a-port #", 1)
        .replace("console:\n", "console:\n  colour: blue\n", 1)
        + "surprise: 1\n"
    )
    line = one_line(run(config, "agents", "list"))
    assert "3 problems" in line
    assert "server.port: expected a whole number" in line
    assert "console.colour: unknown key" in line
    assert "surprise: unknown key" in line


DUPLICATE = """\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {name: dup, version: "1"}
rules:
  - {name: reads, tool: "x.read", tier: auto}
  - {name: reads, tool: "y.read", tier: auto}
  - {name: odd, tool: "z", tier: sometimes}
  - {name: cel, tool: "w", tier: block, reason: "no", when: "args.x +"}
"""


def test_policy_check_reports_every_problem_after_a_duplicate_rule_name(config: Path) -> None:
    policy = config.parent / "policies" / "example.yaml"
    policy.write_text(DUPLICATE)
    proc = run(config, "policy", "check", str(policy))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
    out = proc.stdout + proc.stderr
    assert "example.yaml:6: duplicate rule name 'reads'" in out
    assert "example.yaml:7:" in out and "sometimes" in out
    assert "example.yaml:8:" in out and "CEL" in out


def test_serve_on_a_bad_policy_points_to_policy_check(config: Path) -> None:
    (config.parent / "policies" / "example.yaml").write_text(DUPLICATE)
    proc = run(config, "serve")
    errors = [
        line
        for line in proc.stderr.splitlines()
        if " WARNING " not in line and " INFO " not in line
    ]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert len(errors) == 1, proc.stderr
    assert "policy has 3 problem(s)" in errors[0]
    assert "signoff policy check policies" in errors[0]


def test_an_adapter_left_off_by_an_unset_variable_is_a_warning_at_start(config: Path) -> None:
    server = Server(config, env=quiet_env(SLACK_ESCALATION_CHANNEL="C0SETCHANNEL"))
    server.start()
    server.stop()
    log = server.log_path.read_text()
    warnings = [line for line in log.splitlines() if " WARNING " in line]
    slack = [line for line in warnings if line.split(": ", 1)[1].startswith("slack ")]
    assert len(slack) == 1, log
    assert "${SLACK_BOT_TOKEN}" in slack[0] and "${SLACK_SIGNING_SECRET}" in slack[0]
    assert "SLACK_ESCALATION_CHANNEL" not in slack[0]
    assert any("${PAGERDUTY_ROUTING_KEY}" in line for line in warnings), log
    assert "C0SETCHANNEL" not in log
