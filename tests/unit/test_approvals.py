"""Who may decide and when enough have (bot.approvals): eligibility, self-approval, quorum
over distinct humans and all-of counting."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.approvals import SelfApproval, authorising_group, quorum_met
from bot.domain import (
    Approver,
    Platform,
    PolicyRef,
    Request,
    Requirement,
    Verdict,
    Vote,
)
from bot.errors import NotAuthorized
from tests.factories import make_request

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def human(name: str, email: str | None = None) -> Approver:
    return Approver(Platform.SLACK, "T1", name, name, email)


def request(
    req: Requirement, *, extra: tuple[str, ...] = (), requested_by: str | None = None
) -> Request:
    return make_request(
        "r1",
        agent_id="a1",
        arguments={"amount": 1},
        context={"requested_by": requested_by} if requested_by else {},
        policy=PolicyRef("sha256:x", None, "rule"),
        requirement=req,
        created_at=NOW,
        arguments_sha256="0" * 64,
        call_sha256="1" * 64,
        extra_groups=extra,
    )


def vote(who: Approver, group: str, verdict: Verdict = Verdict.APPROVE) -> Vote:
    return Vote("r1", who, verdict, group, "", NOW)


def test_not_a_member_and_the_requester_are_refused() -> None:
    r = request(Requirement(groups=("finance",)), requested_by="Alice@Example.com")
    with pytest.raises(NotAuthorized, match="not an approver"):
        authorising_group(r, human("bob"), {"dba"}, [])
    with pytest.raises(SelfApproval):
        authorising_group(r, human("alice", "alice@example.com"), {"finance"}, [])
    assert authorising_group(r, human("bob"), {"finance", "dba"}, []) == "finance"


def test_escalation_groups_become_approvers_too() -> None:
    r = request(Requirement(groups=("finance",)), extra=("leads",))
    assert authorising_group(r, human("carol"), {"leads"}, []) == "leads"
    assert quorum_met(r, [vote(human("carol"), "leads")])


def test_quorum_counts_distinct_humans_and_ignores_denials() -> None:
    r = request(Requirement(groups=("finance",), quorum=2))
    alice, erin = human("alice"), human("erin")
    assert not quorum_met(r, [vote(alice, "finance")])
    assert not quorum_met(r, [vote(alice, "finance"), vote(alice, "finance")])
    assert not quorum_met(r, [vote(alice, "finance"), vote(erin, "finance", Verdict.DENY)])
    assert quorum_met(r, [vote(alice, "finance"), vote(erin, "finance")])


def test_all_of_needs_one_human_from_each_group() -> None:
    r = request(Requirement(all_of=("finance", "security")))
    alice, sam = human("alice"), human("sam")
    # alice is in both groups: she is counted for the group nobody has covered yet
    first = authorising_group(r, alice, {"finance", "security"}, [])
    assert first == "finance"
    second = authorising_group(r, sam, {"finance", "security"}, [vote(alice, first)])
    assert second == "security"
    assert not quorum_met(r, [vote(alice, first)])
    assert quorum_met(r, [vote(alice, first), vote(sam, second)])
