"""The approver inbox, the request detail page and the Approve/Deny form.

Authorisation is the chat adapters': the user's groups are the groups listing the person
their login belongs to as a member (SPEC §5), or whose ``console.users`` name the login, and
``Gate.decide`` enforces group membership, no self-approval and one vote per person. A user
sees a request only when they may decide it or already voted on it; anyone else gets the same
404 as for an unknown id.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

from aiohttp import web

from adapters.console.app import (
    Viewer,
    console_approver,
    console_of,
    render,
    require_csrf,
    require_viewer,
)
from adapters.console.entries import EntryView, describe
from bot.approvals import current_approvals, current_votes
from bot.domain import Request, Review, Shown, Status, Verdict, Vote
from bot.edits import parse_proposal
from bot.errors import Conflict, NotAuthorized, NotFound, RequestError

log = logging.getLogger(__name__)

INBOX_SCAN = 500
"""Newest pending requests looked at for one inbox page."""

CHANGE_WAIT = 25.0

DONE = {
    "approve": "You approved this request.",
    "approve_edited": "You approved this request with your edited arguments.",
    "deny": "You denied this request.",
}


@dataclass(frozen=True, slots=True)
class Progress:
    received: int
    required: int


def progress(request: Request, votes: list[Vote]) -> Progress:
    approvals = {v.approver.key for v in current_approvals(request, votes)}
    return Progress(len(approvals), request.requirement.required)


async def inbox(request: web.Request) -> web.StreamResponse:
    who = await require_viewer(request)
    gate = console_of(request).gate
    pending = await gate.list_requests(status=Status.PENDING, limit=INBOX_SCAN)
    rows = []
    for r in pending:
        if not who.may_decide(r):
            continue
        votes = await gate.votes(r.id)
        if who.voted(current_votes(r, votes)):
            continue
        rows.append((r, progress(r, votes)))
    return render(
        request,
        "inbox.html",
        viewer=who,
        rows=rows,
        now=gate.now(),
        version=console_of(request).channel.version,
    )


async def changes(request: web.Request) -> web.StreamResponse:
    """Long-poll for the inbox script: answers when anything changed (or after 25 s)."""
    await require_viewer(request)
    try:
        seen = int(request.query.get("since", "-1"))
    except ValueError:
        seen = -1
    version = await console_of(request).channel.wait_change(seen, CHANGE_WAIT)
    return web.json_response({"version": version})


async def _fetch(request: web.Request) -> tuple[Request, list[Vote]]:
    """The request named in the path and its votes, in one read; 404 when there is none."""
    try:
        view = await console_of(request).gate.view(request.match_info["id"])
    except NotFound:
        raise web.HTTPNotFound() from None
    return view.request, list(view.votes)


def _check_visible(who: Viewer, found: Request, votes: list[Vote]) -> None:
    if not (who.may_decide(found) or who.voted(votes)):
        raise web.HTTPNotFound()


async def _visible(request: web.Request, who: Viewer) -> tuple[Request, list[Vote]]:
    found, votes = await _fetch(request)
    _check_visible(who, found, votes)
    return found, votes


async def _detail_page(
    request: web.Request,
    who: Viewer,
    found: Request,
    votes: list[Vote],
    *,
    flash: str = "",
    error: str = "",
    status: int = 200,
    edit_text: str = "",
) -> web.Response:
    gate = console_of(request).gate
    entries: list[EntryView] = [describe(e) for e in await gate.log_entries_for(found.id)]
    agent = await gate.agent(found.agent_id)
    can_decide = (
        found.status is Status.PENDING
        and who.may_decide(found)
        and not who.voted(current_votes(found, votes))
    )
    return render(
        request,
        "detail.html",
        status=status,
        viewer=who,
        r=found,
        votes=votes,
        entries=entries,
        agent=agent,
        progress=progress(found, votes),
        can_decide=can_decide,
        flash=flash,
        error=error,
        now=gate.now(),
        my_groups=sorted(who.groups.intersection(found.approver_groups)),
        edit_text=edit_text,
        edit_default=json.dumps(
            {"tool": found.call.tool, "arguments": found.current_arguments},
            indent=2,
            ensure_ascii=False,
        ),
    )


async def detail(request: web.Request) -> web.StreamResponse:
    who = await require_viewer(request)
    found, votes = await _visible(request, who)
    return await _detail_page(
        request, who, found, votes, flash=DONE.get(request.query.get("done", ""), "")
    )


async def decide(request: web.Request) -> web.StreamResponse:
    # The viewer's session and the request are read at once (a decision's latency is the
    # long-polls' wake-up); the answers keep their order: not signed in (303), then the
    # CSRF check (403), then a request this viewer may not see (404), as if read in turn.
    viewing, fetched = await asyncio.gather(
        require_viewer(request), _fetch(request), return_exceptions=True
    )
    if isinstance(viewing, BaseException):
        raise viewing
    who = viewing
    form = await require_csrf(request, who)
    if isinstance(fetched, BaseException):
        raise fetched
    found, votes = fetched
    _check_visible(who, found, votes)
    verdict_text = form.get("verdict", "")
    reason = form.get("reason", "").strip()
    edit_text = form.get("edited", "") if verdict_text == "approve_edited" else ""
    if verdict_text not in ("approve", "deny", "approve_edited"):
        return await _detail_page(
            request, who, found, votes, error="Choose Approve or Deny.", status=400
        )
    if not reason:
        return await _detail_page(
            request,
            who,
            found,
            votes,
            error="A reason is required to approve or deny.",
            status=400,
            edit_text=edit_text,
        )
    gate = console_of(request).gate
    approver = console_approver(who.name)
    # The detail page shows the arguments whole with their SHA-256 (sent back with the form,
    # so an approval of arguments that changed since the page was shown is refused).
    review = Review(Shown.FULL, "console_page", form.get("arguments_sha256") or None)
    step_up = None
    try:
        edit = parse_proposal(edit_text, found.call.tool) if edit_text else None
        if verdict_text == "approve_edited" and edit is None:
            raise RequestError("the edited arguments are empty")
        if found.step_up is not None and verdict_text != "deny":
            if edit is not None:
                raise RequestError("a step-up rule is approved as shown; edits are not signed")
            # SPEC §5 step_up: the approver's own key signs this exact call.
            step_up = await console_of(request).stepup.verify(
                who.session.id_hash, who.name, found, form.get("assertion", "")
            )
        await gate.decide(
            found.id,
            approver,
            Verdict.APPROVE if verdict_text == "approve_edited" else Verdict(verdict_text),
            reason,
            memberships=who.groups,
            review=review,
            edit=edit,
            step_up=step_up,
        )
    except NotAuthorized as exc:
        status, message = 403, exc.diagnostics()
    except Conflict as exc:
        status, message = 409, _conflict_text(exc)
    except RequestError as exc:
        status, message = 400, exc.diagnostics()
    else:
        log.info("console: %s voted %s on %s", who.name, verdict_text, found.id)
        raise web.HTTPSeeOther(f"/console/requests/{found.id}?done={verdict_text}")
    found = await gate.get(found.id)
    votes = await gate.votes(found.id)
    return await _detail_page(
        request, who, found, votes, error=message, status=status, edit_text=edit_text
    )


def _conflict_text(exc: Conflict) -> str:
    if "voted" in exc.message:
        return "You have already voted on this request."
    if "already" in exc.message:
        return f"This request was already decided ({exc.message.removeprefix('request is ')})."
    return exc.diagnostics()
