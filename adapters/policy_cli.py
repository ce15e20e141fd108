"""``signoff policy check|test|explain|sign`` (SPEC §3): the policy author's tools.

``check`` lists load problems (exit 1) and lint warnings (exit 0 unless ``--strict``);
``test`` runs table cases (by default the ``*.cases.yaml`` shipped with the policy);
``explain`` shows which rule a call meets and why, with the session it is part of;
``sign`` writes a DSSE envelope over the policy bundle's digest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from bot.errors import PolicyError, SignoffError


def cmd_check(args: argparse.Namespace) -> int:
    from bot.policy.lint import lint_policy
    from bot.policy.loader import check_policy, load_policy
    from bot.policy.source import cases_files

    problems = check_policy(args.paths)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    policy = load_policy(args.paths)
    cases = [Path(path) for path in args.cases] if args.cases else cases_files(args.paths)
    warnings = [*policy.people.warnings, *lint_policy(policy, cases)]
    for line in warnings:
        print(line, file=sys.stderr)
    print(
        f"ok: {len(policy.rules)} rule(s), {len(policy.groups)} group(s), {policy.digest}"
        + (f", {len(warnings)} warning(s)" if warnings else "")
    )
    return 1 if warnings and args.strict else 0


def cmd_test(args: argparse.Namespace) -> int:
    from bot.policy.cases import run_cases
    from bot.policy.loader import load_policy
    from bot.policy.source import cases_files

    cases = [Path(path) for path in args.cases] if args.cases else cases_files(args.paths)
    if not cases:
        raise PolicyError("no cases: pass --cases FILE, or ship NAME.cases.yaml next to the policy")
    policy = load_policy(args.paths)
    ok = True
    for path in cases:
        report = run_cases(policy, path)
        print(f"{path}: {report.render()}")
        ok = ok and report.ok
    return 0 if ok else 1


def cmd_explain(args: argparse.Namespace) -> int:
    from bot.policy.cases import explain
    from bot.policy.loader import load_policy

    arguments = _json_object(args.args, "--args")
    context = _json_object(args.context, "--context") if args.context else {}
    policy = load_policy(args.paths)
    if args.session_id is not None:
        if args.session is not None:
            raise SignoffError("give --session or --session-id, not both")
        if policy.sessions is None:
            raise PolicyError("--session-id: this policy has no `sessions` block")
        view, tools = _stored_session(args, policy.sessions, args.session_id)
        context = {**context, **_context_key(policy.sessions.path, args.session_id)}
        text = explain(
            policy, args.tool, arguments, args.agent, context=context, session=view, tools=tools
        )
    else:
        earlier = _json_list(args.session, "--session") if args.session else []
        text = explain(policy, args.tool, arguments, args.agent, context=context, session=earlier)
    print(text)
    return 0


def _context_key(path: tuple[str, ...], key: str) -> dict[str, Any]:
    if path[0] != "context" or len(path) != 2:
        raise SignoffError(f"--session-id needs sessions.key context.NAME, not {'.'.join(path)}")
    return {path[1]: key}


def _stored_session(args: argparse.Namespace, spec: Any, key: str) -> tuple[Any, dict[str, str]]:
    """The session ``key`` as the server sees it now: the store's summary, and the tools of
    the requests that put each label there."""
    from datetime import UTC, datetime

    from adapters.main import open_store
    from bot.policy.session import summarise
    from bot.settings import config_path, load_settings

    async def go() -> tuple[Any, dict[str, str]]:
        store = await open_store(load_settings(config_path(args.config)))
        try:
            since = datetime.now(UTC) - spec.window
            view = summarise(key, await store.session_calls(key, since))
            tools: dict[str, str] = {}
            for origin in view.origins().values():
                for request_id in {origin.first_request, origin.last_request}:
                    request = await store.get_request(request_id)
                    if request is not None:
                        tools[request_id] = request.call.tool
            return view, tools
        finally:
            await store.close()

    return asyncio.run(go())


def _json_list(text: str, flag: str) -> list[Any]:
    value = _json(text, flag)
    if not isinstance(value, list) or not all(
        isinstance(item, dict) and isinstance(item.get("tool"), str) for item in value
    ):
        raise SignoffError(f'{flag} must be a JSON list of earlier calls: [{{"tool": T, ...}}]')
    return value


def cmd_sign(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from bot.evidence.bundle import FileSigner, default_signature_path, sign_bundle
    from bot.evidence.dsse import encode
    from bot.policy.loader import load_policy

    policy = load_policy(args.paths)
    signer = FileSigner(Path(args.key))
    envelope = sign_bundle(policy.digest, policy.version, policy.name, signer, datetime.now(UTC))
    out = Path(args.out) if args.out else default_signature_path([Path(p) for p in args.paths])
    try:
        out.write_bytes(encode(envelope) + b"\n")
    except OSError as exc:
        raise SignoffError(f"{out}: cannot write the signature ({exc.strerror})") from exc
    print(f"signed {policy.digest} with {signer.kid} -> {out}")
    return 0


def _json_object(text: str, flag: str) -> dict[str, Any]:
    value = _json(text, flag)
    if not isinstance(value, dict):
        raise SignoffError(f"{flag} must be a JSON object")
    return value


def _json(text: str, flag: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SignoffError(f"{flag} is not valid JSON: {exc}") from exc


def register(sub: Any, add: Any, common: argparse.ArgumentParser) -> None:
    policy = sub.add_parser(
        "policy", help="check, test, explain and sign policies", parents=[common]
    )
    psub = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    sp = add("check", cmd_check, "validate policy files and lint their conditions", psub)
    sp.add_argument("paths", nargs="+")
    sp.add_argument(
        "--cases", action="append", help="case file(s) for the coverage lint (default: shipped)"
    )
    sp.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    sp = add("test", cmd_test, "run table cases against policy files", psub)
    sp.add_argument("paths", nargs="+")
    sp.add_argument(
        "--cases", action="append", help="case file (default: the *.cases.yaml shipped with it)"
    )
    sp = add("sign", cmd_sign, "sign the policy bundle (DSSE over its digest)", psub)
    sp.add_argument("paths", nargs="+")
    sp.add_argument("--key", required=True, help="a signoff private key file (keys/*.key)")
    sp.add_argument("--out", help="where to write the envelope (default: policy.sig.json)")
    sp = add("explain", cmd_explain, "show which rule matches a call and why", psub)
    sp.add_argument("paths", nargs="+")
    sp.add_argument("--tool", required=True)
    sp.add_argument("--args", required=True, help="the arguments as a JSON object")
    sp.add_argument("--agent", default="cli")
    sp.add_argument("--context", help="the call's context as a JSON object")
    sp.add_argument(
        "--session",
        help='earlier calls of its session, oldest first: [{"tool": T, "arguments": {...}}]',
    )
    sp.add_argument(
        "--session-id", help="judge the call in this stored session (reads the --config store)"
    )
