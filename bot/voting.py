"""One human's verdict on a request, as a step for ``Gate._transition`` (SPEC §5, §8).

``check_vote`` refuses what is wrong whatever the request's state (a deny without a reason,
an approval of arguments shown cut); ``vote_step`` builds the step that checks the request as
read (final? edited since the review? step-up needed? an approver? voted already?) and
records the vote, deciding the request when the vote denies or completes the quorum. Pure
functions over domain values: no store, no clock. Must not import ``adapters``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from bot.approvals import SelfApproval, authorising_group, quorum_met
from bot.domain import JSON, Approver, Event, Request, Review, Shown, Status, Verdict, Vote
from bot.edits import Proposal, check_edit
from bot.errors import Conflict, NotAuthorized, RequestError
from bot.metrics import Metrics
from bot.policy.people import People
from bot.ports import NoticeKind
from bot.transition import Step, Transition

CARD_IN_FULL = Review(Shown.FULL, "card")
"""The default review: a card that showed the arguments whole."""


class NotShownInFull(NotAuthorized):
    """An approval from a view that showed the arguments cut (SPEC §8)."""


class StepUpRequired(NotAuthorized):
    """An approval of a ``step_up`` rule without a verified security-key assertion."""


#: makes a pending request approved with a grant (``Gate._approve``)
Approve = Callable[[Request, datetime], Request]


def check_vote(
    approver: Approver,
    verdict: Verdict,
    reason: str,
    review: Review,
    edit: Proposal | None,
    step_up: Mapping[str, JSON] | None,
    metrics: Metrics,
) -> None:
    """Refuse a vote that no state of the request could accept. Raises ``RequestError``,
    ``NotShownInFull``."""
    if verdict is Verdict.DENY and not reason:
        raise RequestError("a reason is required to deny")
    if verdict is Verdict.APPROVE and review.shown is not Shown.FULL:
        # SPEC §8: an approver never approves arguments they were not shown in full.
        metrics.refusals.labels(approver.platform.value, "not_shown_in_full").inc()
        raise NotShownInFull(
            "this card cut the arguments: use Review and approve to see them in full first"
        )
    if edit is not None and verdict is not Verdict.APPROVE:
        raise RequestError("only an approval can change the arguments")
    if step_up is not None and step_up.get("call_sha256") is None:
        raise RequestError("a step-up record must name the call it signed")


def vote_step(
    approver: Approver,
    verdict: Verdict,
    reason: str,
    *,
    memberships: Collection[str],
    people: People,
    review: Review,
    edit: Proposal | None,
    step_up: Mapping[str, JSON] | None,
    metrics: Metrics,
    approve: Approve,
) -> Step:
    """The step recording ``approver``'s vote (``approver`` and ``memberships`` already
    resolved to the person). Raises, when run, ``Conflict`` (already final, already voted on
    these arguments, arguments changed since ``review``), ``StepUpRequired``,
    ``NotAuthorized``, ``RequestError`` (a bad edit)."""

    def step(request: Request, stored: Sequence[Vote], now: datetime) -> Transition:
        if request.status.final:
            raise Conflict(f"request is already {request.status.value}")
        shown = review.arguments_sha256
        if shown is not None and shown != request.current_sha256:
            raise Conflict("the arguments changed since you reviewed them; review again")
        if verdict is Verdict.APPROVE and step_up is None and request.step_up is not None:
            # SPEC §5 step_up: only a verified security-key assertion approves.
            metrics.refusals.labels(approver.platform.value, "step_up").inc()
            raise StepUpRequired("this rule needs your security key: approve it in the console")
        if step_up is not None and step_up["call_sha256"] != request.current_call_sha256:
            # The assertion's challenge was bound to another call (an edit happened).
            raise Conflict("the call changed since your security key signed it; try again")
        votes = [replace(v, approver=people.identify(v.approver)) for v in stored]
        try:
            group = authorising_group(request, approver, memberships, votes, people)
        except NotAuthorized as exc:
            tag = "self_approval" if isinstance(exc, SelfApproval) else "not_approver"
            metrics.refusals.labels(approver.platform.value, tag).inc()
            raise
        changed = check_edit(request, edit, approver, now) if edit is not None else None
        if changed is not None and changed.arguments_sha256 == request.current_sha256:
            changed = None  # "edited" to what is already up for approval
        version = changed.arguments_sha256 if changed else request.current_sha256
        # One person, one vote per version of the arguments (an edit resets approvals).
        earlier = next(
            (
                v
                for v in votes
                if v.approver.key == approver.key
                and (v.arguments_sha256 or request.arguments_sha256) == version
            ),
            None,
        )
        if earlier is not None:
            raise Conflict(
                f"you have already voted on this request (as {earlier.approver.key}, "
                f"from {earlier.approver.platform.value}); one person has one vote"
            )
        vote = Vote(request.id, approver, verdict, group, reason, now, version)
        all_votes = (*votes, vote)
        after = replace(request, version=request.version + 1, edit=changed or request.edit)
        event = Event.DENIED if verdict is Verdict.DENY else Event.APPROVED
        if verdict is Verdict.DENY:
            after = replace(after, status=Status.DENIED, decided_at=now, reason=reason)
        elif quorum_met(after, all_votes):
            after = approve(replace(after, decided_at=now, reason=reason or None), now)
        kind = NoticeKind.DECIDED if after.status.final else NoticeKind.VOTED
        return Transition(
            after,
            event,
            vote=vote,
            votes=all_votes,
            approver=approver,
            group=group,
            reason=reason or None,
            review=review,
            step_up=step_up,
            notices=((kind, ()),),
        )

    return step


__all__ = ["CARD_IN_FULL", "NotShownInFull", "StepUpRequired", "check_vote", "vote_step"]
