"""The console's report page: the figures of ``signoff report``, with charts, over the
requests routed to the viewer's own groups only (SPEC §8)."""

from __future__ import annotations

from datetime import datetime, timedelta

from aiohttp import web

from adapters.console.app import console_of, render, require_viewer
from adapters.console.reporting import charts, iso, load_report, pct, secs, to_json
from adapters.console.times import parse_time
from bot.errors import RequestError

DEFAULT_WINDOW = timedelta(days=30)


async def report_page(request: web.Request) -> web.StreamResponse:
    who = await require_viewer(request)
    console = console_of(request)
    now = console.gate.now()
    error = ""
    bounds: dict[str, datetime | None] = {"since": now - DEFAULT_WINDOW, "until": None}
    for name in ("since", "until"):
        text = request.query.get(name, "").strip()
        if text:
            try:
                bounds[name] = parse_time(text, now)
            except RequestError as exc:
                error = exc.message
    report = await load_report(
        console.gate,
        console.settings,
        now=now,
        since=bounds["since"],
        until=bounds["until"],
        groups=who.groups,
    )
    if request.query.get("format") == "json":
        return web.json_response(to_json(report))
    return render(
        request,
        "report.html",
        viewer=who,
        report=report,
        charts=charts(report),
        error=error,
        pct=pct,
        secs=secs,
        iso=iso,
        since=request.query.get("since", ""),
        until=request.query.get("until", ""),
    )
