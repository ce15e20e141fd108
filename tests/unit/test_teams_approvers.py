"""Who may decide from Teams: Entra object id in the group's users, in the right tenant."""

from __future__ import annotations

from types import SimpleNamespace

from adapters.teams.approvers import memberships, refresh_user_ids, tenant_of
from bot.policy.model import ConsoleRoute, GroupSpec, SlackRoute, TeamsRoute

TENANT = "11111111-2222-3333-4444-555555555555"
OTHER = "99999999-2222-3333-4444-555555555555"
ALICE = "aaaaaaaa-0000-0000-0000-000000000001"
BOB = "bbbbbbbb-0000-0000-0000-000000000002"

GROUPS = {
    "finance": GroupSpec("finance", teams=TeamsRoute("https://smba/", "19:f", None, (ALICE, BOB))),
    "leads": GroupSpec("leads", teams=TeamsRoute("https://smba/", "19:l", TENANT, (ALICE,))),
    "slack-only": GroupSpec("slack-only", slack=SlackRoute("C1", None, (ALICE,))),
    "console": GroupSpec("console", console=ConsoleRoute((ALICE,))),
}


def test_listed_user_is_a_member_case_insensitively() -> None:
    assert memberships(GROUPS, ["finance"], ALICE.upper(), TENANT) == {"finance"}


def test_only_candidate_groups_with_a_teams_route_count() -> None:
    found = memberships(GROUPS, ["finance", "slack-only", "console", "missing"], ALICE, TENANT)
    assert found == {"finance"}


def test_unlisted_or_anonymous_users_are_members_of_nothing() -> None:
    assert memberships(GROUPS, list(GROUPS), "cccccccc-0000", TENANT) == set()
    assert memberships(GROUPS, list(GROUPS), None, TENANT) == set()
    assert memberships(GROUPS, list(GROUPS), "", TENANT) == set()


def test_route_tenant_must_match() -> None:
    assert memberships(GROUPS, ["leads"], ALICE, TENANT) == {"leads"}
    assert memberships(GROUPS, ["leads"], ALICE, OTHER) == set()
    assert memberships(GROUPS, ["leads"], ALICE, None) == set()


def test_configured_tenant_applies_when_the_route_names_none() -> None:
    assert memberships(GROUPS, ["finance"], BOB, OTHER, default_tenant=TENANT) == set()
    assert memberships(GROUPS, ["finance"], BOB, TENANT, default_tenant=TENANT) == {"finance"}
    # the route's own tenant wins over the configured one
    assert memberships(GROUPS, ["leads"], ALICE, TENANT, default_tenant=OTHER) == {"leads"}


def test_refresh_ids_are_mris_without_duplicates() -> None:
    assert refresh_user_ids(GROUPS, ["finance", "leads", "console"]) == [
        f"8:orgid:{ALICE}",
        f"8:orgid:{BOB}",
    ]


def test_tenant_comes_from_the_conversation_then_channel_data() -> None:
    assert tenant_of(SimpleNamespace(tenant_id=TENANT), {"tenant": {"id": OTHER}}) == TENANT
    assert tenant_of(SimpleNamespace(tenant_id=None), {"tenant": {"id": OTHER}}) == OTHER
    assert tenant_of(None, None) is None
    assert tenant_of(SimpleNamespace(tenant_id=None), {"tenant": "x"}) is None
