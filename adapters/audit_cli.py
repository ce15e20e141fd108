"""``signoff audit verify|prove|export``: the compliance side of the Merkle log (SPEC §3)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

from adapters.runtime import Runtime
from bot.checkpoints import Checkpointer
from bot.domain import LogEntry, utc
from bot.errors import ConfigError, EvidenceError, NotFound, SignoffError
from bot.evidence import dsse
from bot.evidence.audit import AuditError, prove_bundle, verify_log
from bot.evidence.checkpoint import parse_checkpoint
from bot.evidence.cosignature import (
    VerifierKey,
    note_parts,
    parse_verifier_key,
    verify_cosignatures,
)
from bot.service import Gate
from bot.settings import config_path, load_settings

BATCH = 10_000
WITNESS_LOOKBACK = 1000  # stored checkpoints searched for the newest cosigned one


def _open(args: argparse.Namespace) -> AbstractAsyncContextManager[Runtime]:
    """The core (no adapter) for one command; its store closes on exit."""
    from adapters.main import running

    return running(load_settings(config_path(args.config)))


def _entries(gate: Gate, loop: asyncio.AbstractEventLoop, size: int) -> Iterator[LogEntry]:
    """Stream entries 0..size-1 from the log (read on ``loop``) into a worker thread."""
    for start in range(0, size, BATCH):
        future = asyncio.run_coroutine_threadsafe(
            gate.log_entries(start, min(start + BATCH, size)), loop
        )
        yield from future.result()


def cmd_verify(args: argparse.Namespace) -> int:
    older = None
    if args.checkpoint:
        try:
            older = Path(args.checkpoint).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{args.checkpoint}: cannot read ({exc.strerror})") from exc

    witnesses = [_witness_key(text) for text in args.witness or []]

    async def go() -> tuple[int, str]:
        nonlocal older
        async with _open(args) as runtime:
            if witnesses:
                older = await _witnessed(runtime.checkpoints, witnesses, older)
            cp = await runtime.checkpoints.current()
            loop = asyncio.get_running_loop()
            from tqdm import tqdm  # only this command draws a bar: no other pays the import

            bar = tqdm(total=cp.size, unit="entry", disable=None, file=sys.stderr, leave=False)

            def progress(done: int) -> None:
                bar.update(done - bar.n)

            try:
                report = await asyncio.to_thread(
                    verify_log,
                    _entries(runtime.gate, loop, cp.size),
                    runtime.gate.public_keys(),
                    checkpoint=cp.note,
                    older_checkpoint=older,
                    origin=runtime.settings.log.origin,
                    progress=progress,
                )
            finally:
                bar.close()
            return report.size, cp.note.splitlines()[2]

    count, root = asyncio.run(go())
    extra = " and consistent with the given checkpoint" if older else ""
    if witnesses and older is not None:
        size = parse_checkpoint(older).size
        extra = f" and consistent with the checkpoint of size {size} cosigned by every witness"
    print(f"log intact: {count} entries, every signature valid, root {root}{extra}")
    return 0


def _witness_key(text: str) -> VerifierKey:
    try:
        return parse_verifier_key(text)
    except EvidenceError as exc:
        raise ConfigError(f"--witness: {exc.message}") from exc


async def _witnessed(
    checkpoints: Checkpointer, witnesses: list[VerifierKey], given: str | None
) -> str:
    """The checkpoint every witness must have cosigned: the given one, else the newest stored
    one carrying cosignatures by these witnesses. Raises ``AuditError``."""
    names = {w.name for w in witnesses}
    explicit = given is not None
    if given is None:
        for cp in await checkpoints.recent(WITNESS_LOOKBACK):
            signers = {line.split(" ")[1] for line in note_parts(cp.note)[1] if " " in line}
            if names & signers:
                given = cp.note
                break
        else:
            raise AuditError(
                "no checkpoint carries cosignatures by the given witnesses "
                "(is log.witnesses configured and were the witnesses reachable?)"
            )
    try:
        verify_cosignatures(given, witnesses)
    except EvidenceError as exc:
        raise AuditError(f"witnessed checkpoint: {exc.message}") from exc
    size = await checkpoints.log_size()
    witnessed = parse_checkpoint(given).size
    if not explicit and witnessed < size:
        raise AuditError(
            f"the witnesses cosigned the log up to size {witnessed}, but it has {size} entries: "
            "the newer entries are not witnessed (witnesses unreachable, or they refused a "
            "history that does not extend what they saw)"
        )
    return given


def cmd_prove(args: argparse.Namespace) -> int:
    async def go() -> dict[str, Any]:
        async with _open(args) as runtime:
            gate = runtime.gate
            try:
                await gate.get(args.request_id)
            except NotFound:
                raise SignoffError(f"no request {args.request_id!r}") from None
            cp = await runtime.checkpoints.current()
            pairs = []
            for entry in await gate.log_entries_for(args.request_id):
                if entry.index < cp.size:
                    pairs.append((entry, await gate.inclusion_proof(entry.index, cp.size)))
            return prove_bundle(args.request_id, pairs, cp.note, gate.public_keys())

    print(json.dumps(asyncio.run(go()), indent=2))
    return 0


def _time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError as exc:
        raise SignoffError(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-21T10:00:00Z)") from exc


def cmd_export(args: argparse.Namespace) -> int:
    since, until = _time(args.since), _time(args.until)

    async def go() -> int:
        count = 0
        async with _open(args) as runtime:
            gate = runtime.gate
            cp = await runtime.checkpoints.current()
            for start in range(0, cp.size, BATCH):
                for entry in await gate.log_entries(start, min(start + BATCH, cp.size)):
                    if (since and entry.created_at < since) or (
                        until and entry.created_at >= until
                    ):
                        continue
                    proof = await gate.inclusion_proof(entry.index, cp.size)
                    record = {
                        "index": entry.index,
                        "request_id": entry.request_id,
                        "event": entry.event.value,
                        "created_at": entry.created_at.isoformat().replace("+00:00", "Z"),
                        "envelope": dsse.decode(entry.envelope),
                        "receipt": {
                            "tree_size": cp.size,
                            "inclusion_proof": [dsse.b64encode(h) for h in proof],
                            "checkpoint": cp.note,
                        },
                    }
                    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
                    count += 1
        return count

    count = asyncio.run(go())
    print(f"exported {count} attestation(s)", file=sys.stderr)
    return 0


def register(sub: Any, add: Any, common: argparse.ArgumentParser) -> None:
    audit = sub.add_parser("audit", help="verify, prove and export the audit log", parents=[common])
    asub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    sp = add("verify", cmd_verify, "recompute the whole log and check every signature", asub)
    sp.add_argument("--checkpoint", help="an older checkpoint file to prove consistency with")
    sp.add_argument(
        "--witness",
        nargs="+",
        metavar="KEY",
        help="witness verifier keys (name+hash+key): require a checkpoint cosigned by every "
        "one of them, and the log consistent with it",
    )
    sp = add("prove", cmd_prove, "print a request's attestations with inclusion proofs", asub)
    sp.add_argument("request_id")
    sp = add("export", cmd_export, "JSON Lines of attestations with receipts", asub)
    sp.add_argument("--since", help="ISO 8601 time (inclusive)")
    sp.add_argument("--until", help="ISO 8601 time (exclusive)")


__all__ = ["register"]
