"""A throwaway PostgreSQL cluster for a test run: initdb into a temp dir, a free port, stop after.

The suite never relies on an already-configured server. ``admin_url()`` returns the URL named
by ``SIGNOFF_TEST_PG_URL`` when it is set (point it at any server whose role may create
databases); otherwise it starts one ``Cluster`` per process from Debian's PostgreSQL binaries
(``/usr/lib/postgresql/<newest>/bin``, or ``SIGNOFF_PG_BIN``), exports its URL in
``SIGNOFF_TEST_PG_URL`` so child processes use the same server, and stops it at exit.

The cluster listens on 127.0.0.1 only, with password (SCRAM) authentication and a random
password; its Unix socket lives in the temp dir. initdb refuses to run as root, so as root the
server runs as the ``postgres`` user (``nobody`` when there is none) through ``runuser``.

``python -m tests.pg_cluster CMD...`` runs CMD with ``SIGNOFF_TEST_PG_URL`` set to a fresh
cluster (or the one already named) and stops the cluster afterwards: ``make test`` uses it.
"""

from __future__ import annotations

import atexit
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ENV = "SIGNOFF_TEST_PG_URL"


class ClusterError(RuntimeError):
    """The throwaway cluster could not be started."""


def bin_dir() -> Path:
    """Directory holding initdb/pg_ctl: ``SIGNOFF_PG_BIN``, else Debian's newest version."""
    named = os.environ.get("SIGNOFF_PG_BIN")
    if named:
        return Path(named)
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise ClusterError(
        "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb): install "
        "Debian's postgresql package (scripts/ensure-services.sh does it as root), or set "
        f"{ENV} to a server you run"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run_as() -> str | None:
    """The unprivileged user to run the server as when we are root, else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise ClusterError("running as root and neither a 'postgres' nor a 'nobody' user exists")


class Cluster:
    """One PostgreSQL server in a temp dir, owned by this process."""

    def __init__(self, *, fsync: bool = False) -> None:
        self.bin = bin_dir()
        self.user = _run_as()
        self.password = secrets.token_urlsafe(18)
        self.port = 0
        self.fsync = fsync
        self.root = Path(tempfile.mkdtemp(prefix="signoff-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._started = False

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database as the superuser."""
        return f"postgresql+psycopg://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    def _cmd(self, *argv: str) -> list[str]:
        if self.user is None:
            return list(argv)
        return ["runuser", "-u", self.user, "--", *argv]

    def _run(self, *argv: str) -> None:
        proc = subprocess.run(
            self._cmd(*argv), capture_output=True, text=True, check=False, cwd=self.root
        )
        if proc.returncode != 0:
            raise ClusterError(f"{Path(argv[0]).name} failed: {proc.stderr.strip()[-2000:]}")

    def init(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        pwfile.chmod(0o600)
        try:
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-instructions",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self) -> None:
        """Start the server (initdb first when new); on a port clash, retry on another port."""
        if not self.data.exists():
            self.init()
        last: ClusterError | None = None
        for _ in range(5):
            self.port = self.port or _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
                f"-c max_connections=300 -c fsync={'on' if self.fsync else 'off'} "
                "-c full_page_writes=off -c log_min_messages=warning"
            )
            try:
                self._run(
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                )
            except ClusterError as exc:
                last = exc
                self.port = 0
                continue
            self._started = True
            return
        tail = self.log.read_text()[-2000:] if self.log.exists() else ""
        raise ClusterError(f"{last}\n{tail}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate`` is a crash: no checkpoint); the data dir stays."""
        if self._started:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")
            self._started = False

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


_shared: Cluster | None = None


def admin_url() -> str:
    """URL of a PostgreSQL server the tests may create databases on (see the module doc)."""
    global _shared
    named = os.environ.get(ENV)
    if named:
        return named
    if _shared is None:
        cluster = Cluster()
        try:
            cluster.start()
        except BaseException:
            cluster.destroy()
            raise
        _shared = cluster
        atexit.register(cluster.destroy)
    os.environ[ENV] = _shared.url
    return _shared.url


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m tests.pg_cluster CMD [ARG...]", file=sys.stderr)
        return 2
    if os.environ.get(ENV):
        return subprocess.call(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cluster = Cluster()
    try:
        cluster.start()
        print(f"PostgreSQL test cluster on 127.0.0.1:{cluster.port} ({cluster.root})", flush=True)
        return subprocess.call(argv, env={**os.environ, ENV: cluster.url})
    except ClusterError as exc:
        print(f"test PostgreSQL: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.destroy()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
