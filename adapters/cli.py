"""The ``signoff`` command line (SPEC §3). User errors print one line on stderr and exit
non-zero; no tracebacks for user errors."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shlex
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from bot.errors import PolicyError, SignoffError
from bot.settings import Settings, config_path, load_settings

T = TypeVar("T")
Command = Callable[[argparse.Namespace], int]


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def settings_of(args: argparse.Namespace) -> Settings:
    return load_settings(config_path(args.config))


# ---------------------------------------------------------------- init / serve


def cmd_init(args: argparse.Namespace) -> int:
    from adapters.home import init_home

    created = init_home(Path(args.dir))
    for line in created:
        print(line)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from adapters.logs import configure_logging, warn_unset_variables
    from adapters.serving import serve
    from adapters.workers import check_workers, serve_workers

    settings = settings_of(args)
    overrides = {
        name: value
        for name in ("host", "port", "workers")
        if (value := getattr(args, name)) is not None
    }
    if overrides:
        settings = dataclasses.replace(
            settings, server=dataclasses.replace(settings.server, **overrides)
        )
    check_workers(settings)
    configure_logging(settings)
    warn_unset_variables(settings)
    try:
        if settings.server.workers > 1:
            return serve_workers(settings)
        serve(settings)
    except PolicyError as exc:
        paths = " ".join(shlex.quote(_shown(settings.path(p))) for p in settings.policy.paths)
        exc.hint = f"run `signoff policy check {paths}` to list every problem"
        raise
    return 0


# ---------------------------------------------------------------- agents


def cmd_agents_add(args: argparse.Namespace) -> int:
    from adapters.main import running

    settings = settings_of(args)
    labels = dict(_pair(item) for item in args.label or [])

    async def go() -> str:
        async with running(settings) as runtime:
            _, token = await runtime.gate.register_agent(
                args.name, artifact_digest=args.artifact_digest, labels=labels
            )
            return str(token)

    token = run_async(go())
    if args.quiet:
        print(token)
    else:
        print(f"agent {args.name} registered; its token (shown once, store it safely):")
        print(token)
    return 0


def _pair(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SignoffError(f"--label must look like key=value, got {item!r}")
    return key, value


def cmd_agents_list(args: argparse.Namespace) -> int:
    from adapters.main import running

    settings = settings_of(args)

    async def go() -> list[Any]:
        async with running(settings) as runtime:
            return list(await runtime.gate.list_agents())

    agents = run_async(go())
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "id": a.id,
                        "artifact_digest": a.artifact_digest,
                        "labels": dict(a.labels),
                        "suspended": a.suspended,
                        "created_at": a.created_at.isoformat(),
                    }
                    for a in agents
                ]
            )
        )
        return 0
    print(f"{'AGENT':<24} {'STATE':<10} {'CREATED':<20} ARTIFACT")
    for a in agents:
        state = "suspended" if a.suspended else "active"
        print(
            f"{a.id:<24} {state:<10} {a.created_at:%Y-%m-%d %H:%M:%S}  {a.artifact_digest or '-'}"
        )
    return 0


def cmd_agents_suspend(args: argparse.Namespace) -> int:
    from adapters.main import running

    settings = settings_of(args)

    async def go() -> int:
        # with the adapters: the denied requests' cards are updated before the command ends
        async with running(settings, adapters=True) as runtime:
            return len(await runtime.gate.suspend_agent(args.name))

    denied = run_async(go())
    print(f"agent {args.name} suspended; {denied} pending request(s) denied")
    return 0


def cmd_agents_resume(args: argparse.Namespace) -> int:
    from adapters.main import running

    settings = settings_of(args)

    async def go() -> None:
        async with running(settings) as runtime:
            await runtime.gate.resume_agent(args.name)

    run_async(go())
    print(f"agent {args.name} resumed")
    return 0


# ---------------------------------------------------------------- keys


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from bot.evidence.keys import KeyRing

    settings = settings_of(args)
    ring = KeyRing.load(settings.path(settings.keys.dir))
    old = ring.kid
    new = ring.rotate()
    print(f"new signing key {new}; {old} retired (still published for verification)")
    print("send SIGHUP to running `signoff serve` processes (or restart them) to sign with it")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from datetime import datetime

    from bot.errors import ConfigError
    from bot.evidence.keys import KeyRing

    settings = settings_of(args)
    try:
        since = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since {args.since!r} is not an ISO 8601 time") from None
    if since.tzinfo is None:
        raise ConfigError(f"--since {args.since!r} needs a time zone (e.g. append Z for UTC)")
    KeyRing.load(settings.path(settings.keys.dir)).revoke(args.kid, since)
    print(
        f"key {args.kid} revoked since {args.since}: its signatures dated later fail "
        "`audit verify` and its grants are refused; send SIGHUP to running servers"
    )
    return 0


# ---------------------------------------------------------------- parser


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    relative = os.path.relpath(path)
    return str(path.resolve()) if relative.startswith("..") else relative


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that name the (sub)command they belong to."""

    argv: Sequence[str] = ()

    def error(self, message: str) -> NoReturn:
        if "required: COMMAND" in message:
            unknown = [
                a for a in self.argv if a.startswith("-") and a.split("=")[0] not in _TOP_FLAGS
            ]
            if unknown:
                message = f"unrecognized arguments: {' '.join(unknown)} (a COMMAND comes first)"
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


_TOP_FLAGS = ("--config", "-h", "--help")


def parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--config",
        # SUPPRESS: a subcommand's own --config must not reset one given before it
        default=argparse.SUPPRESS,
        help="configuration file (default $SIGNOFF_CONFIG or ./signoff.yaml)",
    )
    p = _Parser(
        prog="signoff",
        description="Human-in-the-loop gate for AI-agent tool calls.",
    )
    p.add_argument("--config", default=None, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Command, help: str, parent: Any = sub) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = parent.add_parser(name, help=help, parents=[common])
        sp.set_defaults(fn=fn, command_prog=sp.prog)
        return sp

    sp = add("init", cmd_init, "write a working home (config, key, example policy, demo agent)")
    sp.add_argument("dir", nargs="?", default=".")
    sp = add("serve", cmd_serve, "run the server until SIGINT/SIGTERM")
    sp.add_argument("--host", help="listen address (overrides server.host)")
    sp.add_argument("--port", type=int, help="listen port (overrides server.port)")
    sp.add_argument(
        "--workers", type=int, help="server processes on one port (overrides server.workers)"
    )

    agents = sub.add_parser("agents", help="manage agents", parents=[common])
    asub = agents.add_subparsers(dest="agents_command", required=True, metavar="ACTION")
    sp = add("add", cmd_agents_add, "register an agent and print its token", asub)
    sp.add_argument("name")
    sp.add_argument("--artifact-digest", default=None)
    sp.add_argument("--label", action="append", help="key=value (repeatable)")
    sp.add_argument("--quiet", action="store_true", help="print the token alone")
    sp = add("list", cmd_agents_list, "list agents", asub)
    sp.add_argument("--json", action="store_true")
    sp = add("suspend", cmd_agents_suspend, "suspend an agent and deny its pending requests", asub)
    sp.add_argument("name")
    sp = add("resume", cmd_agents_resume, "resume a suspended agent", asub)
    sp.add_argument("name")

    keys = sub.add_parser("keys", help="manage signing keys", parents=[common])
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    add("rotate", cmd_keys_rotate, "create a new signing key; old keys stay published", ksub)
    sp = add(
        "revoke", cmd_keys_revoke, "stop trusting a key's signatures dated after --since", ksub
    )
    sp.add_argument("kid")
    sp.add_argument("--since", required=True, help="ISO 8601 time with a zone (e.g. ...Z)")

    for extend in _extensions():
        extend(sub, add, common)
    return p


def _extensions() -> list[Callable[[Any, Any, argparse.ArgumentParser], None]]:
    """Command groups contributed by other adapters (audit, report, users, mcp-gateway)."""
    from adapters import commands

    return commands.extensions()


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    words = list(sys.argv[1:] if argv is None else argv)
    if isinstance(p, _Parser):
        p.argv = words
    args, extra = p.parse_known_args(words)
    if extra:
        prog = getattr(args, "command_prog", p.prog)
        p.exit(
            2,
            f"{prog}: error: unrecognized arguments: {' '.join(extra)} (see `{prog} --help`)\n",
        )
    try:
        code = int(args.fn(args))
    except SignoffError as exc:
        print(f"signoff: error: {exc.diagnostics()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
