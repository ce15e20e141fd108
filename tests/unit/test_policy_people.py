"""The ``people:`` section (SPEC §5): loading, problems, warnings, and who an account is."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.cli import main
from bot.domain import Approver, Platform
from bot.errors import PolicyError
from bot.policy.loader import load_sources
from bot.policy.model import Policy

HEAD = "apiVersion: signoff/v1\nkind: ToolPolicy\n"
RULES = "rules:\n  - {name: r, tool: x, tier: confirm, approvers: {groups: [finance]}}\n"
PEOPLE = """\
people:
  alice: {email: Alice@Example.com, slack: U0ALICE, teams: AAAA-BBBB, console: alice}
  bob:   {email: bob@example.com, console: bob}
"""
GROUPS = """\
groups:
  finance:
    members: [alice, bob]
    slack: {channel: C0FIN}
    console: {}
"""


def load(text: str) -> Policy:
    return load_sources([("p.yaml", HEAD + text)])


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load(text)
    return list(caught.value.details)


def test_people_and_members_load() -> None:
    policy = load(PEOPLE + GROUPS + RULES)
    assert policy.groups["finance"].members == ("alice", "bob")
    assert policy.people.groups_of("alice") == {"finance"}
    assert policy.people.warnings == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            PEOPLE + "groups:\n  finance: {members: [alice, zed], console: {}}\n" + RULES,
            "group 'finance' lists member 'zed', who is not in people",
        ),
        (
            "people:\n  a: {slack: U1}\n  b: {slack: U1}\n"
            + GROUPS.replace("alice, bob", "a")
            + RULES,
            "person 'b' shares the slack identity 'U1' with person 'a'",
        ),
        (
            "people:\n  a: {email: X@e.com}\n  b: {email: x@E.com}\n"
            + GROUPS.replace("alice, bob", "a")
            + RULES,
            "person 'b' shares the email identity 'x@e.com' with person 'a'",
        ),
        ("people:\n  'slack:U1': {slack: U1}\n" + GROUPS + RULES, "may only use letters"),
        ("people:\n  a: {name: A}\n" + GROUPS + RULES, "names no email, slack, teams or console"),
        ("people:\n  a: {email: nope}\n" + GROUPS + RULES, "is not an address"),
        ("people:\n  a: {phone: '1'}\n" + GROUPS + RULES, "unknown key 'phone' in person 'a'"),
        (
            PEOPLE + "groups:\n  finance: {console: {}}\n" + RULES,
            "group 'finance' console names nobody",
        ),
    ],
)
def test_people_problems(text: str, expected: str) -> None:
    assert any(expected in line for line in problems(text)), problems(text)


def test_old_users_lists_load_and_unmapped_ids_warn() -> None:
    policy = load(
        PEOPLE
        + "groups:\n  finance:\n    slack: {channel: C0FIN, users: [U0ALICE, U0X]}\n"
        + "    console: {users: [bob, eve]}\n"
        + RULES
    )
    assert policy.people.warnings == (
        "p.yaml:7: warning: group 'finance' slack user 'U0X' is no person in people; "
        "it counts as a person of its own",
        "p.yaml:7: warning: group 'finance' console user 'eve' is no person in people; "
        "it counts as a person of its own",
    )


def test_policy_check_prints_the_warnings_and_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + "groups:\n  finance: {console: {users: [eve]}}\n" + RULES)
    assert main(["policy", "check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "warning: group 'finance' console user 'eve' is no person" in err
    assert out.startswith("ok: 1 rule(s), 1 group(s)") and "warning(s)" in out


def test_an_account_resolves_to_its_person() -> None:
    people = load(PEOPLE + GROUPS + RULES).people
    # one Slack user id is one person whatever team id the click names
    for team in ("T1", "T2"):
        assert people.resolve(Approver(Platform.SLACK, team, "U0ALICE")) == "alice"
        assert people.resolve(Approver(Platform.SLACK, team, "U0X")) == "slack:U0X"
    # Entra object ids compare case-insensitively
    assert people.resolve(Approver(Platform.TEAMS, "t", "aaaa-bbbb")) == "alice"
    # by the e-mail the platform reports, when no person lists the id
    by_email = Approver(Platform.SLACK, "T1", "U0BOB2", email="BOB@example.com")
    assert people.resolve(by_email) == "bob"
    assert people.resolve(Approver(Platform.CONSOLE, "console", "eve")) == "console:eve"


def test_every_name_of_the_person_marks_the_requester() -> None:
    people = load(PEOPLE + GROUPS + RULES).people
    names = people.names(Approver(Platform.CONSOLE, "console", "alice"))
    for name in ("alice", "alice@example.com", "u0alice", "aaaa-bbbb", "slack:u0alice"):
        assert name in names
    assert "bob" not in names
