"""``signoff users add|list|disable|enable`` and ``signoff report`` (SPEC §3): the console's
commands, outside ``adapters.console`` because they open the database through the composition
root (``adapters.main.records``), which imports the console.

Passwords are read from stdin (``--password-stdin``, one line) or an interactive prompt
(typed twice), never from the command line, and stored only as Argon2id hashes.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from adapters.console.app import make_templates
from adapters.console.passwords import hash_password
from adapters.console.reporting import load_report, to_html, to_json, to_table
from adapters.console.times import parse_time
from bot.accounts import ConsoleUser
from bot.errors import ConfigError, RequestError
from bot.report import DEFAULT_MIN_REQUESTS
from bot.settings import Settings, config_path, load_settings

if TYPE_CHECKING:
    from adapters.runtime import Records

T = TypeVar("T")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(config_path(args.config))


def _with_records(settings: Settings, work: Callable[[Records], Awaitable[T]]) -> T:
    from adapters.main import records

    async def go() -> T:
        async with records(settings) as opened:
            return await work(opened)

    return asyncio.run(go())


def read_password(from_stdin: bool) -> str:
    """One line from stdin, or a prompt typed twice. Raises ``RequestError``."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise RequestError(
                "no terminal to type the password on: pipe it in with --password-stdin"
            )
        try:
            password = getpass.getpass("password: ")
            again = getpass.getpass("again: ")
        except EOFError:
            raise RequestError("no password given") from None
        if again != password:
            raise RequestError("the two passwords differ")
    if not password:
        raise RequestError("no password given")
    return password


def cmd_users_add(args: argparse.Namespace) -> int:
    if not NAME.match(args.name):
        raise RequestError(
            f"{args.name!r} is not a valid user name (letters, digits and . _ @ + -)"
        )
    settings = _settings(args)
    password_hash = hash_password(read_password(args.password_stdin))
    user = ConsoleUser(args.name, password_hash, datetime.now(UTC))
    _with_records(settings, lambda db: db.users.add_user(user))
    print(f"console user {args.name} added")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    users = _with_records(settings, lambda db: db.users.list_users())
    if args.json:
        print(
            json.dumps(
                [
                    {"name": u.name, "disabled": u.disabled, "created_at": u.created_at.isoformat()}
                    for u in users
                ]
            )
        )
        return 0
    print(f"{'USER':<24} {'STATE':<9} CREATED")
    for u in users:
        state = "disabled" if u.disabled else "active"
        print(f"{u.name:<24} {state:<9} {u.created_at:%Y-%m-%d %H:%M:%S}")
    return 0


def _set_disabled(args: argparse.Namespace, disabled: bool) -> int:
    settings = _settings(args)
    _with_records(settings, lambda db: db.users.set_user_disabled(args.name, disabled))
    print(f"console user {args.name} {'disabled (sessions ended)' if disabled else 'enabled'}")
    return 0


def cmd_users_disable(args: argparse.Namespace) -> int:
    return _set_disabled(args, True)


def cmd_users_enable(args: argparse.Namespace) -> int:
    return _set_disabled(args, False)


def cmd_report(args: argparse.Namespace) -> int:
    settings = _settings(args)
    now = datetime.now(UTC)
    since = parse_time(args.since, now) if args.since else None
    until = parse_time(args.until, now) if args.until else None
    if since and until and since >= until:
        raise RequestError("--since must be before --until")
    report = _with_records(
        settings,
        lambda db: load_report(
            db.requests, settings, now=now, since=since, until=until, min_requests=args.min_requests
        ),
    )
    if args.format == "json":
        text = json.dumps(to_json(report), indent=2, ensure_ascii=False) + "\n"
    elif args.format == "html":
        text = to_html(report, make_templates())
    else:
        text = to_table(report)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{args.output}: cannot write the report ({exc.strerror})") from exc
        print(f"report written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def register(subparsers: Any, add: Any, common: argparse.ArgumentParser) -> None:
    """Add ``users`` and ``report`` to the ``signoff`` command line."""
    users = subparsers.add_parser("users", help="manage console users", parents=[common])
    usub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    sp = add("add", cmd_users_add, "add a console user (password from stdin or a prompt)", usub)
    sp.add_argument("name")
    sp.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin",
    )
    sp = add("list", cmd_users_list, "list console users", usub)
    sp.add_argument("--json", action="store_true")
    sp = add("disable", cmd_users_disable, "disable a console user and end their sessions", usub)
    sp.add_argument("name")
    sp = add("enable", cmd_users_enable, "enable a disabled console user", usub)
    sp.add_argument("name")

    sp = add("report", cmd_report, "HITL review data: approval rates, time to decision, signals")
    sp.add_argument("--since", help="start of the window: 2026-11-01, 2026-11-01T10:00Z or 7d")
    sp.add_argument("--until", help="end of the window (default now)")
    sp.add_argument("--format", choices=("table", "json", "html"), default="table")
    sp.add_argument("--output", help="write to FILE instead of stdout")
    sp.add_argument(
        "--min-requests",
        type=int,
        default=DEFAULT_MIN_REQUESTS,
        metavar="N",
        help="human decisions a tool needs before always-approved/denied signals",
    )


__all__ = ["register"]
