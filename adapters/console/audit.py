"""The audit browser: log entries with filters, each entry's envelope and inclusion proof,
the latest checkpoint, and "verify now" (the full ``verify_log`` over the store).

Entries of requests the user may not see (not in their groups, no vote of theirs) are listed
by index, event and leaf hash only; content filters (tool, agent, approver) never match them,
so a filter cannot reveal what they hold. The listing scans ``SCAN`` entries back from the
newest (or from ``before``) per page, and says which range it scanned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from adapters.console.app import Viewer, console_of, render, require_csrf, require_viewer
from adapters.console.entries import EntryView, describe, envelope_text
from adapters.console.times import parse_time
from bot.domain import Event, LogEntry
from bot.errors import EvidenceError, NotFound, RequestError
from bot.evidence import merkle
from bot.evidence.audit import verify_log

log = logging.getLogger(__name__)

SCAN = 500
VERIFY_BATCH = 5000


@dataclass(frozen=True, slots=True)
class Filters:
    tool: str = ""
    agent: str = ""
    decision: str = ""
    approver: str = ""
    since: datetime | None = None
    until: datetime | None = None

    @property
    def by_content(self) -> bool:
        return bool(self.tool or self.agent or self.approver)

    def match(self, view: EntryView, visible: bool) -> bool:
        if self.decision and view.event != self.decision:
            return False
        if self.since and view.created_at < self.since:
            return False
        if self.until and view.created_at >= self.until:
            return False
        if self.by_content and not visible:
            return False
        if self.tool and self.tool.casefold() not in view.tool.casefold():
            return False
        if self.agent and self.agent.casefold() != view.agent.casefold():
            return False
        wanted = self.approver.casefold()
        return (
            not wanted
            or wanted in view.approver.casefold()
            or wanted in (view.approver_id.casefold())
        )


def _filters(request: web.Request, now: datetime) -> tuple[Filters, str]:
    q = request.query
    error = ""
    bounds: dict[str, datetime | None] = {"since": None, "until": None}
    for name in bounds:
        if q.get(name, "").strip():
            try:
                bounds[name] = parse_time(q[name], now)
            except RequestError as exc:
                error = exc.message
    decision = q.get("decision", "")
    if decision and decision not in {e.value for e in Event}:
        decision, error = "", f"unknown decision {decision!r}"
    return Filters(
        q.get("tool", "").strip(),
        q.get("agent", "").strip(),
        decision,
        q.get("approver", "").strip(),
        **bounds,
    ), error


class _Visibility:
    """Which requests' entries this user may read (cached per page)."""

    def __init__(self, request: web.Request, who: Viewer) -> None:
        self.gate = console_of(request).gate
        self.who = who
        self.known: dict[str, bool] = {}

    async def __call__(self, request_id: str | None) -> bool:
        if request_id is None:
            return True
        if request_id not in self.known:
            try:
                found = await self.gate.get(request_id)
            except NotFound:
                ok = False
            else:
                ok = self.who.may_decide(found) or self.who.voted(await self.gate.votes(found.id))
            self.known[request_id] = ok
        return self.known[request_id]


async def audit(request: web.Request) -> web.StreamResponse:
    who = await require_viewer(request)
    console = console_of(request)
    gate = console.gate
    filters, error = _filters(request, gate.now())
    checkpoint = await console.checkpoints.current()
    size = checkpoint.size
    try:
        stop = min(int(request.query.get("before", size)), size)
    except ValueError:
        stop = size
    start = max(0, stop - SCAN)
    visible = _Visibility(request, who)
    rows = []
    for entry in reversed(await gate.log_entries(start, stop)):
        view = describe(entry)
        shown = await visible(view.request_id)
        if filters.match(view, shown):
            rows.append((view, shown))
    return render(
        request,
        "audit.html",
        viewer=who,
        rows=rows,
        filters=filters,
        error=error,
        checkpoint=checkpoint,
        start=start,
        stop=stop,
        events=[e.value for e in Event],
        query={k: v for k, v in request.query.items() if k != "before"},
    )


async def entry(request: web.Request) -> web.StreamResponse:
    who = await require_viewer(request)
    console = console_of(request)
    gate = console.gate
    try:
        index = int(request.match_info["index"])
    except ValueError:
        raise web.HTTPNotFound() from None
    checkpoint = await console.checkpoints.current()
    if not 0 <= index < checkpoint.size:
        raise web.HTTPNotFound()
    found = await gate.log_entries(index, index + 1)
    if not found:
        raise web.HTTPNotFound()
    view = describe(found[0])
    shown = await _Visibility(request, who)(view.request_id)
    proof = await gate.inclusion_proof(index, checkpoint.size)
    try:
        merkle.verify_inclusion(found[0].leaf_hash, index, checkpoint.size, proof, checkpoint.root)
        proof_ok, proof_problem = True, ""
    except EvidenceError as exc:
        proof_ok, proof_problem = False, exc.message
    return render(
        request,
        "entry.html",
        viewer=who,
        view=view,
        shown=shown,
        text=envelope_text(view) if shown else "",
        checkpoint=checkpoint,
        proof=[h.hex() for h in proof],
        proof_ok=proof_ok,
        proof_problem=proof_problem,
    )


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    size: int
    seconds: float
    message: str
    index: int | None = None
    root: str = ""
    decisions: tuple[tuple[str, int], ...] = ()


async def run_verification(request: web.Request) -> VerifyResult:
    """``verify_log`` over every stored entry, the keys and the latest checkpoint, fed in
    batches from the store while a worker thread checks them."""
    console = console_of(request)
    gate = console.gate
    checkpoint = await console.checkpoints.current()
    loop = asyncio.get_running_loop()
    size = checkpoint.size

    def entries() -> Iterator[LogEntry]:
        for start in range(0, size, VERIFY_BATCH):
            stop = min(size, start + VERIFY_BATCH)
            batch = asyncio.run_coroutine_threadsafe(gate.log_entries(start, stop), loop)
            yield from batch.result()

    began = time.perf_counter()
    try:
        report = await asyncio.to_thread(
            verify_log,
            entries(),
            gate.public_keys(),
            checkpoint=checkpoint.note,
            origin=console.settings.log.origin,
            workers=1,
        )
    except EvidenceError as exc:
        return VerifyResult(
            False, size, time.perf_counter() - began, exc.message, index=getattr(exc, "index", None)
        )
    return VerifyResult(
        True,
        report.size,
        time.perf_counter() - began,
        f"all {report.size} entries verify; the checkpoint's root matches",
        root=report.root.hex(),
        decisions=tuple(sorted(report.decisions.items())),
    )


async def verify(request: web.Request) -> web.StreamResponse:
    who = await require_viewer(request)
    await require_csrf(request, who)
    async with console_of(request).verify_lock:
        result = await run_verification(request)
    log.info("console: %s ran verify now: %s", who.name, "ok" if result.ok else result.message)
    checkpoint = await console_of(request).checkpoints.current()
    return render(
        request,
        "verify.html",
        viewer=who,
        result=result,
        checkpoint=checkpoint,
        status=200 if result.ok else 409,
    )
