"""Who may decide a request and when enough of them have: group eligibility, self-approval,
quorum and all-of counting over distinct people (SPEC §5). Pure functions over domain values.

Votes and approvers reaching these functions carry their ``person`` (``People.identify``), so
``Approver.key`` is the person: one human voting from Slack and the console is one vote."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence

from bot.domain import JSON, Approver, Request, Verdict, Vote
from bot.errors import NotAuthorized
from bot.policy.people import NOBODY, People


class SelfApproval(NotAuthorized):
    """The approver is the person who asked for the call (``context.requested_by``)."""


def authorising_group(
    request: Request,
    approver: Approver,
    memberships: Collection[str],
    votes: Sequence[Vote],
    people: People = NOBODY,
) -> str:
    """The group in whose name ``approver`` decides. ``memberships`` are the groups the
    platform adapter verified them in. Raises ``SelfApproval`` or ``NotAuthorized``."""
    check_not_requester(request, approver, people)
    eligible = [g for g in request.approver_groups if g in memberships]
    if not eligible:
        raise NotAuthorized("you are not an approver for this request")
    # One approval from each all_of group is required: count this human for an all_of group
    # nobody has approved for yet, then any all_of group, then the any-of groups.
    covered = {v.group for v in current_approvals(request, votes)}
    all_of = [g for g in request.requirement.all_of if g in eligible]
    for group in all_of:
        if group not in covered:
            return group
    return all_of[0] if all_of and not request.requirement.groups else eligible[0]


def current_votes(request: Request, votes: Sequence[Vote]) -> list[Vote]:
    """The votes on the arguments now up for approval (``request.current_sha256``): an
    approver's edit resets votes on earlier versions (``bot.edits``)."""
    current = request.current_sha256
    return [v for v in votes if (v.arguments_sha256 or request.arguments_sha256) == current]


def current_approvals(request: Request, votes: Sequence[Vote]) -> list[Vote]:
    """The approvals among ``current_votes``: only these count toward quorum."""
    return [v for v in current_votes(request, votes) if v.verdict is Verdict.APPROVE]


def quorum_met(request: Request, votes: Sequence[Vote]) -> bool:
    """True when the approvals in ``votes`` of the current arguments satisfy the request's
    requirement: ``quorum`` distinct humans from the any-of groups (escalation groups count
    there too), and one distinct human from each ``all_of`` group."""
    approvals = current_approvals(request, votes)
    req = request.requirement
    any_of = set(req.groups) | set(request.extra_groups)
    all_of_ok = all(any(v.group == g for v in approvals) for g in req.all_of)
    if req.groups:
        counted = {v.approver.key for v in approvals if v.group in any_of}
        return all_of_ok and len(counted) >= req.quorum
    if not req.all_of:
        # No approvers named (cannot happen with a valid policy): an escalation group alone
        # decides, otherwise nobody can approve.
        return bool(request.extra_groups) and any(v.group in any_of for v in approvals)
    return all_of_ok


def check_not_requester(request: Request, approver: Approver, people: People = NOBODY) -> None:
    """Raise ``SelfApproval`` when ``context.requested_by`` names the person ``approver`` is,
    by person key, e-mail (any case) or any platform id of theirs."""
    named = {n.strip().casefold() for n in _strings(request.call.context.get("requested_by"))}
    if named & people.names(approver):
        raise SelfApproval("you requested this call, so someone else must decide it")


def _strings(value: JSON) -> Iterator[str]:
    """The strings in ``requested_by``: the API only accepts a string, but requests stored
    before that rule may hold a list or object; every name in it counts (fail closed)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
