"""What the bench scripts that run a real ``signoff serve`` share: the ``signoff`` command,
a free loopback port, a fresh home on it (``signoff init``, or ``write_home`` for a given
policy, database and extra configuration), the PostgreSQL server to use, and an environment
without the chat/paging credentials a developer may have exported (so no adapter reaches
out). Bench code never imports from ``tests``; the test suite reuses ``write_home``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
import psycopg
from psycopg import sql

from bot.evidence.keys import KeyRing

SIGNOFF = str(Path(sys.executable).with_name("signoff"))
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

POLICY = """\
apiVersion: signoff/v1
kind: ToolPolicy
metadata: {name: test, version: "t1"}
groups:
  finance:
    console: {users: [alice, erin]}
  leads:
    console: {users: [carol]}
  security:
    console: {users: [sam]}
defaults:
  unknown_tool: confirm
  sla: 15m
  approvers: {groups: [security]}
rules:
  - name: reads
    tool: "*.read"
    tier: auto
  - name: large-transfer
    tool: payments.transfer
    when: args.amount >= 10000
    tier: confirm
    approvers: {groups: [finance]}
    sla: 15m
  - name: dual-transfer
    tool: payments.wire
    tier: confirm
    approvers: {groups: [finance], quorum: 2}
  - name: small-transfer
    tool: payments.transfer
    tier: auto
    rate_limit: {max: 3, per: 1h, key: agent}
  - name: notify-email
    tool: email.send
    tier: notify
    approvers: {groups: [finance]}
  - name: no-force-push
    tool: repos.force_push
    when: args.branch in ["main", "release"]
    tier: block
    reason: force-push to protected branches is never allowed
"""


def write_home(
    root: Path,
    *,
    policy: str = POLICY,
    database_url: str | None = None,
    port: int = 8080,
    extra: str = "",
) -> Path:
    """Create a home under ``root`` and return the path of its signoff.yaml."""
    (root / "policies").mkdir(parents=True, exist_ok=True)
    (root / "policies" / "policy.yaml").write_text(policy, encoding="utf-8")
    KeyRing.create(root / "keys")
    url = database_url or f"sqlite:///{root / 'signoff.db'}"
    config = root / "signoff.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            server: {{host: 127.0.0.1, port: {port}, public_url: "http://127.0.0.1:{port}"}}
            database: {{url: "{url}"}}
            keys: {{dir: ./keys}}
            policy: {{paths: [./policies], watch: false}}
            """
        )
        + textwrap.dedent(extra),
        encoding="utf-8",
    )
    return config


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


def pg_admin_url(bench: str) -> str:
    """A PostgreSQL server whose role may create databases: ``SIGNOFF_BENCH_PG_URL``, else
    ``SIGNOFF_TEST_PG_URL`` (``make bench`` runs the scripts under ``tests.pg_cluster``, which
    sets it to a throwaway cluster). Exits with a one-line message naming ``bench`` when
    neither is set."""
    url = os.environ.get("SIGNOFF_BENCH_PG_URL") or os.environ.get("SIGNOFF_TEST_PG_URL", "")
    if not url:
        raise SystemExit(
            f"{bench} needs PostgreSQL: set SIGNOFF_BENCH_PG_URL, or run it through "
            "`make bench` (which starts a throwaway cluster)"
        )
    return url


@contextlib.contextmanager
def scratch_database(bench: str) -> Iterator[str]:
    """A fresh database on ``pg_admin_url(bench)`` (``fresh_database``)."""
    with fresh_database(pg_admin_url(bench), f"signoff_{bench}") as url:
        yield url


@contextlib.contextmanager
def fresh_database(admin: str, prefix: str) -> Iterator[str]:
    """A new database on the server of ``admin`` (a SQLAlchemy URL allowed to create
    databases), named ``prefix`` and a unique suffix, dropped with its connections
    afterwards; yields its SQLAlchemy URL."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(libpq(admin), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(admin, name)
    finally:
        with psycopg.connect(libpq(admin), autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def libpq(url: str) -> str:
    """The SQLAlchemy URL as a libpq URI (no ``+driver``), for psycopg."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=parts.scheme.split("+", 1)[0]))


def with_database(url: str, database: str) -> str:
    """``url`` naming ``database`` instead of its own."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


async def wait_ready(
    http: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes], timeout: float = 60
) -> None:
    """Wait until ``signoff serve`` at ``base`` answers ``/readyz`` with 200; exits if the
    process ends first or ``timeout`` seconds pass."""
    async with asyncio.timeout(timeout):
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"signoff serve exited early ({proc.returncode})")
            try:
                async with http.get(base + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


async def console_session(
    http: aiohttp.ClientSession, base: str, user: str, password: str
) -> tuple[dict[str, str], str]:
    """Sign ``user`` in to the console at ``base`` through its form; returns the headers
    that carry the session cookie and the session's CSRF token (for decision forms)."""
    async with http.get(f"{base}/console/login") as page:
        token = CSRF.search(await page.text())
        assert token is not None, "no CSRF token on the sign-in page"
        login_cookie = page.cookies["signoff_login"].value
    # sent by hand: a cookie jar keeps Secure cookies away from a plain-http server
    async with http.post(
        f"{base}/console/login",
        data={"csrf_token": token.group(1), "username": user, "password": password},
        headers={"Cookie": f"signoff_login={login_cookie}"},
        allow_redirects=False,
    ) as resp:
        assert resp.status == 303, await resp.text()
        session = resp.cookies["signoff_session"].value
    headers = {"Cookie": f"signoff_session={session}"}
    async with http.get(f"{base}/console/", headers=headers) as page:
        token = CSRF.search(await page.text())
        assert token is not None, "no CSRF token on the console page"
    return headers, token.group(1)


def add_agent(config: Path, name: str = "bench-agent") -> str:
    """``signoff agents add NAME`` on the home of ``config``; the agent's token."""
    out = subprocess.run(
        [SIGNOFF, "--config", str(config), "agents", "add", name, "--quiet"],
        check=True,
        capture_output=True,
        text=True,
        env=quiet_env(),
    )
    return out.stdout.strip()


def add_user(config: Path, name: str, password: str) -> None:
    """``signoff users add NAME --password-stdin`` on the home of ``config``."""
    subprocess.run(
        [SIGNOFF, "--config", str(config), "users", "add", name, "--password-stdin"],
        input=password.encode(),
        check=True,
        capture_output=True,
        env=quiet_env(),
    )


def serve(config: Path, workers: int = 1) -> subprocess.Popen[bytes]:
    """``signoff serve`` on ``config`` (``--workers`` when more than one), started as a user
    would (``wait_ready`` waits for it)."""
    extra = ["--workers", str(workers)] if workers > 1 else []
    return subprocess.Popen([SIGNOFF, "--config", str(config), "serve", *extra], env=quiet_env())


def with_search_path(url: str, schema: str) -> str:
    """``url`` with ``schema`` first on the connection's search path (libpq ``options``)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["options"] = f"{query.get('options', '')} -csearch_path={schema}".strip()
    return urlunsplit(parts._replace(query=urlencode(query)))


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (the workers of ``signoff serve --workers N``)."""
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
        return [int(p) for p in fh.read().split()]


def proc_stat(pid: int) -> tuple[float, int, int]:
    """(CPU seconds, RSS bytes, open fds) of ``pid`` and its child processes (the workers of
    ``--workers N``), added up."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    for child in children(pid):
        more = proc_stat(child)
        cpu, rss, fds = cpu + more[0], rss + more[1], fds + more[2]
    return cpu, rss, fds
