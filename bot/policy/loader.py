"""Loading the tool policy (SPEC §5) from files and folders into one ``Policy``.

``load_policy`` raises ``PolicyError("policy has N problem(s)", details=[...])`` listing every
problem as ``path:line: message``; ``check_policy`` returns those lines instead.

Decisions:
- Files are taken in the order given; folders are searched recursively for ``*.yaml``/``*.yml``
  in sorted path order. Rules apply in that order (then document order, then list order).
- Every document is ``apiVersion: signoff/v1``, ``kind: ToolPolicy``. Groups are shared by all
  files (a name may be defined once); each ``defaults`` key may be set once overall.
- ``defaults.unknown_tool`` is ``confirm`` (the default) or ``block``; ``defaults.sla`` is 15m
  unless set. An unknown tool under ``confirm`` goes to ``defaults.approvers`` when given, else
  to every group (any one human of any group); its ladder is ``defaults.escalation`` ending in
  a deny at ``defaults.sla``.
- The digest is ``sha256:`` + hex SHA-256 of the RFC 8785 canonical JSON of the list of all
  parsed documents in load order. Comments, whitespace, quoting style and key order do not
  change it; file names do not either; the order of files and of rules does.
- ``metadata.version`` (and ``metadata.name``): the distinct values of all documents, joined
  with ``+`` in load order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import rfc8785
from yaml.nodes import MappingNode, Node, SequenceNode

from bot.domain import EscalationStep, Requirement, Tier
from bot.errors import PolicyError
from bot.policy.model import (
    ConsoleRoute,
    EmailRoute,
    GroupSpec,
    Policy,
    Rule,
    SlackRoute,
    TeamsRoute,
)
from bot.policy.people import Person, build_people, read_people
from bot.policy.rules import read_approvers, read_escalation, read_rule, read_tier
from bot.policy.session import SessionSpec, read_sessions
from bot.policy.source import Bad, Problems, Reader, compose, read_sources, scalar_of, to_plain

API_VERSION = "signoff/v1"
KIND = "ToolPolicy"
DEFAULT_SLA = timedelta(minutes=15)
_TOP_KEYS = ("apiVersion", "kind", "metadata", "people", "groups", "defaults", "rules", "sessions")
_DEFAULT_KEYS = ("unknown_tool", "sla", "approvers", "escalation")


def load_policy(paths: Sequence[Path | str]) -> Policy:
    """The policy in ``paths``; raises ``PolicyError`` listing every problem."""
    problems = Problems()
    sources = read_sources(paths, problems)
    return _finish(sources, problems)


def load_sources(sources: Sequence[tuple[str, str]]) -> Policy:
    """The policy in ``(name, YAML text)`` pairs (for tests and tools); raises ``PolicyError``."""
    return _finish(sources, Problems())


def check_policy(paths: Sequence[Path | str]) -> list[str]:
    """Every problem of the policy in ``paths`` as ``path:line: message`` (empty: fine)."""
    try:
        load_policy(paths)
    except PolicyError as exc:
        return list(exc.details)
    return []


def _finish(sources: Sequence[tuple[str, str]], problems: Problems) -> Policy:
    policy = _Build(problems).run(sources)
    if problems or policy is None:
        lines = problems.lines()
        raise PolicyError(f"policy has {len(lines)} problem(s)", details=lines)
    return policy


@dataclass
class _Build:
    problems: Problems
    documents: list[Any] = field(default_factory=list)
    groups: dict[str, GroupSpec] = field(default_factory=dict)
    persons: dict[str, Person] = field(default_factory=dict)
    group_nodes: dict[str, tuple[Reader, Node]] = field(default_factory=dict)
    defaults: dict[str, tuple[Reader, Node, Node]] = field(default_factory=dict)
    rule_nodes: list[tuple[Reader, Node]] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    first_path: str = "<policy>"
    sessions: SessionSpec | None = None

    def run(self, sources: Sequence[tuple[str, str]]) -> Policy | None:
        if sources:
            self.first_path = sources[0][0]
        for path, text in sources:
            reader = Reader(path, self.problems)
            for node in compose(path, text, self.problems):
                self._document(reader, node)
        people = build_people(self.persons, self.groups, self.group_nodes)
        unknown_tool, sla, approvers, ladder = self._defaults()
        rules: list[Rule] = []
        seen: dict[str, str] = {}
        for reader, node in self.rule_nodes:
            name = _rule_name(node)
            if name is not None and name in seen:
                reader.fail(node, f"duplicate rule name {name!r} (first at {seen[name]})")
                continue
            if name is not None:
                seen[name] = reader.at(node)
            rule = read_rule(reader, node, self.groups, sla)
            if rule is not None:
                rules.append(rule)
        if unknown_tool is Tier.CONFIRM and not approvers.all_groups and not self.problems:
            where = self.defaults.get("unknown_tool")
            self.problems.add(
                where[0].path if where else self.first_path,
                where[1] if where else 1,
                "unknown tools need approval but no approver groups are defined "
                "(define groups, set defaults.approvers, or set defaults.unknown_tool: block)",
            )
        if self.problems:
            return None
        return Policy(
            rules=tuple(rules),
            groups=dict(self.groups),
            unknown_tool=unknown_tool,
            default_sla=sla,
            digest=_digest(self.documents),
            version="+".join(self.versions) or None,
            name="+".join(self.names) or None,
            files=tuple(dict.fromkeys(path for path, _ in sources)),
            default_approvers=approvers,
            default_escalation=ladder,
            people=people,
            sessions=self.sessions,
        )

    def _document(self, reader: Reader, node: Node) -> None:
        try:
            plain = to_plain(node)
        except Bad as exc:
            reader.fail(exc.node, exc.message)
            return
        try:
            rfc8785.dumps(plain)
        except rfc8785.CanonicalizationError as exc:
            reader.fail(node, f"document cannot be canonicalised: {exc}")
            return
        self.documents.append(plain)
        found = reader.fields(node, "policy document", _TOP_KEYS, required=("apiVersion", "kind"))
        if found is None or "apiVersion" not in found or "kind" not in found:
            return
        api, kind = scalar_of(found["apiVersion"][1]), scalar_of(found["kind"][1])
        if api != API_VERSION:
            reader.fail(found["apiVersion"][1], f"apiVersion must be {API_VERSION}, not {api!r}")
        if kind != KIND:
            reader.fail(found["kind"][1], f"kind must be {KIND}, not {kind!r}")
        if api != API_VERSION or kind != KIND:
            return
        if "metadata" in found:
            self._metadata(reader, found["metadata"][1])
        for key in ("people", "groups", "rules"):  # an empty `rules:` or `groups:` means none
            if key in found and _is_null(found[key][1]):
                del found[key]
        if "people" in found:
            read_people(reader, found["people"][1], self.persons)
        if "groups" in found:
            self._groups(reader, found["groups"][1])
        if "sessions" in found:  # SPEC §5 Sessions: one block for the whole policy
            if self.sessions is not None:
                reader.fail(
                    found["sessions"][0], f"sessions is already set at {self.sessions.source}"
                )
            else:
                self.sessions = read_sessions(reader, found["sessions"][1])
        if "defaults" in found and (
            values := reader.fields(found["defaults"][1], "defaults", _DEFAULT_KEYS)
        ):
            for key, (key_node, value) in values.items():
                if key in self.defaults:
                    first = self.defaults[key]
                    reader.fail(
                        key_node, f"defaults.{key} is already set at {first[0].at(first[1])}"
                    )
                else:
                    self.defaults[key] = (reader, key_node, value)
        if "rules" in found:
            rules = found["rules"][1]
            if not isinstance(rules, SequenceNode):
                reader.fail(rules, "rules must be a list")
            else:
                self.rule_nodes.extend((reader, item) for item in rules.value)

    def _metadata(self, reader: Reader, node: Node) -> None:
        found = reader.fields(node, "metadata", ("name", "version", "description", "labels"))
        for key, into in (("name", self.names), ("version", self.versions)):
            if found and key in found:
                value = reader.text(found[key][1], f"metadata.{key}")
                if value is not None and value not in into:
                    into.append(value)
        if found and "labels" in found:
            labels = reader.fields(found["labels"][1], "metadata.labels", None) or {}
            for label, (_, label_value) in labels.items():
                reader.text(label_value, f"metadata.labels.{label}")
        if found and "description" in found:
            reader.text(found["description"][1], "metadata.description")

    def _groups(self, reader: Reader, node: Node) -> None:
        found = reader.fields(node, "groups", None)
        for name, (key_node, value) in (found or {}).items():
            if reader.name(key_node, "group name") is None:
                continue
            if name in self.groups:
                reader.fail(
                    key_node, f"group {name!r} is already defined at {self.groups[name].source}"
                )
                continue
            group = _read_group(reader, name, key_node, value)
            if group is not None:
                self.groups[name] = group
                self.group_nodes[name] = (reader, key_node)

    def _defaults(self) -> tuple[Tier, timedelta, Requirement, tuple[EscalationStep, ...]]:
        unknown_tool, sla = Tier.CONFIRM, DEFAULT_SLA
        approvers = Requirement(groups=tuple(self.groups))
        ladder: tuple[EscalationStep, ...] = ()
        if (entry := self.defaults.get("unknown_tool")) is not None:
            allowed = (Tier.CONFIRM, Tier.BLOCK)
            unknown_tool = (
                read_tier(entry[0], entry[2], "defaults.unknown_tool", allowed) or Tier.CONFIRM
            )
        if (entry := self.defaults.get("sla")) is not None:
            sla = entry[0].duration(entry[2], "defaults.sla") or sla
        if (entry := self.defaults.get("approvers")) is not None:
            approvers = read_approvers(entry[0], entry[2], self.groups) or approvers
        if (entry := self.defaults.get("escalation")) is not None:
            ladder = read_escalation(entry[0], entry[2], self.groups, sla) or ()
        else:
            ladder = (EscalationStep(after=sla, deny=True),)
        return unknown_tool, sla, approvers, ladder


def _is_null(node: Node) -> bool:
    return bool(node.tag == "tag:yaml.org,2002:null")


def _rule_name(node: Node) -> str | None:
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if scalar_of(key) == "name" and isinstance(name := scalar_of(value), str):
                return name
    return None


def _read_group(reader: Reader, name: str, key_node: Node, node: Node) -> GroupSpec | None:
    keys = ("members", "slack", "teams", "console", "email", "description")
    found = reader.fields(node, f"group {name!r}", keys)
    if found is None:
        return None
    before = len(reader.problems)
    slack = teams = console = None
    members: tuple[str, ...] = ()
    if "members" in found:
        members = reader.names(found["members"][1], f"group {name!r} members") or ()
    if "slack" in found:
        slack = _slack(reader, name, found["slack"][1], bool(members))
    if "teams" in found:
        teams = _teams(reader, name, found["teams"][1], bool(members))
    if "console" in found:
        console = _console(reader, name, found["console"][1], bool(members))
    email = None
    if "email" in found:
        email_node = found["email"][1]
        if not _is_null(email_node):
            reader.fields(email_node, f"group {name!r} email", ())
        if not members:
            reader.fail(email_node, f"group {name!r} email needs members (people with an email)")
        email = EmailRoute()
    description = (
        reader.text(found["description"][1], "description") if "description" in found else None
    )
    if not (slack or teams or console or email) and len(reader.problems) == before:
        reader.fail(node, f"group {name!r} has no slack, teams, console or email route")
    if len(reader.problems) > before:
        return None
    return GroupSpec(
        name,
        slack,
        teams,
        console,
        description,
        source=reader.at(key_node),
        members=members,
        email=email,
    )


def _console(reader: Reader, group: str, node: Node, members: bool) -> ConsoleRoute | None:
    what = f"group {group!r} console"
    got = {} if _is_null(node) else reader.fields(node, what, ("users",))
    if got is None:
        return None
    if "users" not in got:  # `console: {}`: the group's members decide in the console
        if not members:
            reader.fail(node, f"{what} names nobody: list the group's members (or users)")
            return None
        return ConsoleRoute()
    users = reader.names(got["users"][1], f"{what} users")
    if users is None:
        return None
    if not users and not members:
        reader.fail(got["users"][1], f"{what} needs at least one user")
        return None
    return ConsoleRoute(users=users)


def _slack(reader: Reader, group: str, node: Node, members: bool) -> SlackRoute | None:
    what = f"group {group!r} slack"
    found = reader.fields(node, what, ("channel", "usergroup", "users"), ("channel",))
    if found is None or "channel" not in found:
        return None
    channel = reader.string(found["channel"][1], f"{what} channel")
    usergroup = (
        reader.string(found["usergroup"][1], f"{what} usergroup") if "usergroup" in found else None
    )
    users = reader.names(found["users"][1], f"{what} users") if "users" in found else ()
    if users is not None and not users and usergroup is None and not members:
        reader.fail(node, f"{what} needs members, users or a usergroup (who may approve)")
        return None
    if channel is None or users is None:
        return None
    return SlackRoute(channel=channel, usergroup=usergroup, users=users)


def _teams(reader: Reader, group: str, node: Node, members: bool) -> TeamsRoute | None:
    what = f"group {group!r} teams"
    keys = ("service_url", "conversation_id", "tenant_id", "users")
    required = ("service_url", "conversation_id") if members else (*keys[:2], "users")
    found = reader.fields(node, what, keys, required)
    if found is None or any(key not in found for key in required):
        return None
    url = reader.string(found["service_url"][1], f"{what} service_url")
    conversation = reader.string(found["conversation_id"][1], f"{what} conversation_id")
    tenant = (
        reader.string(found["tenant_id"][1], f"{what} tenant_id") if "tenant_id" in found else None
    )
    users = reader.names(found["users"][1], f"{what} users") if "users" in found else ()
    if url is not None and not url.startswith(("https://", "http://")):
        reader.fail(found["service_url"][1], f"{what} service_url must be an http(s) URL")
        return None
    if users is not None and not users and not members:
        reader.fail(found["users"][1], f"{what} needs at least one user")
        return None
    if url is None or conversation is None or users is None:
        return None
    return TeamsRoute(url, conversation, tenant, users)


def _digest(documents: list[Any]) -> str:
    return "sha256:" + hashlib.sha256(rfc8785.dumps(documents)).hexdigest()
