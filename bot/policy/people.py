"""People (SPEC §5): who each human is across channels, and which person an account is.

Owns the policy's ``people:`` section and the identity rules every channel shares. Votes,
quorum and the no-self-approval rule count people, never accounts:

- A person is keyed by a name (letters, digits, ``. _ @ -``; never ``:``) and lists every
  identity they act under: ``email`` (compared case-insensitively), ``slack`` (user id),
  ``teams`` (Entra object id, case-insensitive) and ``console`` (login). One identity
  belongs to at most one person.
- ``People.resolve`` maps an account to a person: the person listing its platform id, else
  (when the platform reported a verified e-mail, as Slack's ``users.info`` does) the person
  with that e-mail, else a person of its own keyed ``<platform>:<id>``.
- A Slack user id is one person whatever team id the click names: one signoff installation
  talks to one workspace or Enterprise Grid organisation, where user ids are unique
  (``U…``/``W…`` ids are organisation-wide on Grid), so the team id is recorded but never
  makes a second person. Entra object ids are unique directory-wide the same way.
- ``People.names`` is every string that names the person an account resolves to (key,
  e-mail, each platform id, the account itself): ``context.requested_by`` equal to any of
  them (case-insensitively) makes the account the requester.

Pure values; built by ``bot.policy.loader`` (via ``read_people``), read by ``bot.approvals``,
the gate and the adapters. Imports nothing from adapters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from yaml.nodes import Node

from bot.domain import Approver, Platform
from bot.policy.source import Reader

if TYPE_CHECKING:
    from bot.policy.model import GroupSpec

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")
_FIELDS = ("email", "slack", "teams", "console", "name")
#: platforms whose ids compare case-insensitively (Entra object ids are GUIDs)
_FOLDED = frozenset({Platform.TEAMS, Platform.EMAIL})


@dataclass(frozen=True, slots=True)
class Person:
    """One human and every identity they act under."""

    key: str
    email: str | None = None
    slack: str | None = None
    teams: str | None = None
    console: str | None = None
    name: str | None = None
    source: str = ""

    def account(self, platform: Platform) -> str | None:
        """The person's id on ``platform`` (None when they have none there)."""
        return {
            Platform.SLACK: self.slack,
            Platform.TEAMS: self.teams,
            Platform.CONSOLE: self.console,
            Platform.EMAIL: self.email,
        }.get(platform)

    @property
    def names(self) -> frozenset[str]:
        """Every string naming this person, case-folded: key, e-mail, each platform id, bare
        and as ``<platform>:<id>`` (how an account no person claims is keyed)."""
        found = [self.key, self.email]
        for platform in Platform:
            if account := self.account(platform):
                found += [account, own_key(platform, account)]
        return frozenset(n.strip().casefold() for n in found if n)


def _norm(platform: Platform, user_id: str) -> str:
    return user_id.casefold() if platform in _FOLDED else user_id


def own_key(platform: Platform, user_id: str) -> str:
    """The person key of an account no person claims: ``<platform>:<id>``."""
    return f"{platform.value}:{_norm(platform, user_id)}"


@dataclass(frozen=True, slots=True)
class People:
    """The people of a policy and the groups each is a member of."""

    persons: Mapping[str, Person] = field(default_factory=dict)
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    _ids: dict[tuple[str, str], str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        ids = {ident: p.key for p in self.persons.values() for ident in _identities(p)}
        object.__setattr__(self, "_ids", ids)

    def get(self, key: str) -> Person | None:
        return self.persons.get(key)

    def claimed(self, platform: Platform, user_id: str) -> str | None:
        """The person listing ``user_id`` as their ``platform`` id, if any."""
        return self._ids.get((platform.value, _norm(platform, user_id)))

    def resolve(self, approver: Approver) -> str:
        """The person key ``approver``'s account belongs to (see the module rules)."""
        found = self.claimed(approver.platform, approver.user_id)
        if found is None and approver.email:
            found = self._ids.get(("email", approver.email.strip().casefold()))
        return found or own_key(approver.platform, approver.user_id)

    def identify(self, approver: Approver) -> Approver:
        """``approver`` with ``person`` set to whom their account resolves now."""
        person = self.resolve(approver)
        if person == approver.person:
            return approver
        return replace(approver, person=person)

    def names(self, approver: Approver) -> frozenset[str]:
        """Every string (case-folded) that names the person ``approver`` is."""
        key = approver.person or self.resolve(approver)
        person = self.persons.get(key)
        own = (key, approver.user_id, approver.email, approver.account)
        found = frozenset(n.strip().casefold() for n in own if n)
        return found | person.names if person is not None else found

    def groups_of(self, key: str) -> frozenset[str]:
        """Groups that list person ``key`` among their ``members``."""
        return self.groups.get(key, frozenset())


NOBODY = People()


def label(approver: Approver) -> str:
    """How reports and the console name whoever ``approver`` is: the person key (``alice``),
    or for an account no person claimed when it voted, its name and ``<platform>:<id>``."""
    key = approver.person or own_key(approver.platform, approver.user_id)
    if ":" not in key:
        return key
    name = approver.display_name or approver.user_id
    return key if name == approver.user_id else f"{name} ({key})"


def display(approver: Approver) -> str:
    """A short name for cards: the person key when a person claims the account (``alice``),
    else the platform's display name (or id)."""
    if approver.person and ":" not in approver.person:
        return approver.person
    return approver.display_name or approver.user_id


def _identities(person: Person) -> list[tuple[str, str]]:
    ids = [("email", person.email.casefold())] if person.email else []
    return ids + [(p.value, _norm(p, a)) for p in Platform if (a := person.account(p))]


def read_people(reader: Reader, node: Node, into: dict[str, Person]) -> None:
    """Add the persons of one ``people:`` mapping to ``into``; problems go to ``reader``.
    Each identity may belong to one person only (else one human could vote twice)."""
    found = reader.fields(node, "people", None)
    for key, (key_node, value) in (found or {}).items():
        if not _KEY.fullmatch(key):
            reader.fail(key_node, f"person {key!r} may only use letters, digits and . _ @ -")
            continue
        if key in into:
            reader.fail(key_node, f"person {key!r} is already defined at {into[key].source}")
            continue
        what = f"person {key!r}"
        got = reader.fields(value, what, _FIELDS)
        if got is None:
            continue
        values: dict[str, str] = {}
        for name, (_, item) in got.items():
            text = reader.string(item, f"{what} {name}")
            if text is not None:
                values[name] = text.strip()
        if len(values) != len(got):
            continue
        person = Person(key=key, source=reader.at(key_node), **values)
        if not _identities(person):
            reader.fail(key_node, f"{what} names no email, slack, teams or console identity")
            continue
        if person.email is not None and "@" not in person.email:
            reader.fail(got["email"][1], f"{what} email {person.email!r} is not an address")
            continue
        taken = {ident: other.key for other in into.values() for ident in _identities(other)}
        clash = next((i for i in _identities(person) if i in taken), None)
        if clash is not None:
            reader.fail(
                key_node,
                f"{what} shares the {clash[0]} identity {clash[1]!r} with person "
                f"{taken[clash]!r} (one identity belongs to one person)",
            )
            continue
        into[key] = person


def build_people(
    persons: Mapping[str, Person],
    groups: Mapping[str, GroupSpec],
    where: Mapping[str, tuple[Reader, Node]],
) -> People:
    """``People`` for the loaded ``groups``: an unknown member is a problem (reported with
    the group's reader); a per-platform ``users`` id no person claims is a warning (it
    counts as a person of its own)."""
    memberships: dict[str, set[str]] = {}
    warnings: list[str] = []
    draft = People(dict(persons))
    for name, group in groups.items():
        reader, node = where[name]
        for member in group.members:
            if member not in persons:
                reader.fail(node, f"group {name!r} lists member {member!r}, who is not in people")
            memberships.setdefault(member, set()).add(name)
        routes = (
            (Platform.SLACK, group.slack.users if group.slack else ()),
            (Platform.TEAMS, group.teams.users if group.teams else ()),
            (Platform.CONSOLE, group.console.users if group.console else ()),
        )
        for platform, users in routes:
            for user in users:
                if draft.claimed(platform, user) is None:
                    warnings.append(
                        f"{reader.at(node)}: warning: group {name!r} {platform.value} user "
                        f"{user!r} is no person in people; it counts as a person of its own"
                    )
    return People(
        dict(persons),
        {key: frozenset(names) for key, names in memberships.items()},
        tuple(warnings),
    )


__all__ = [
    "NOBODY",
    "People",
    "Person",
    "build_people",
    "display",
    "label",
    "own_key",
    "read_people",
]
