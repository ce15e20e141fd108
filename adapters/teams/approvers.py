"""Who may decide from Teams: group membership by Entra object id and tenant (SPEC §5, §8).

A clicker belongs to a group when the group has a ``teams`` route whose ``users`` list their
Entra object id (``from.aadObjectId``) and, when the route (or, failing that,
``teams.tenant_id``) names a tenant, the click came from that tenant. Pure functions of the
policy; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bot.policy.model import GroupSpec
from bot.policy.people import NOBODY, People

_MRI_PREFIX = "8:orgid:"


def _same(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def memberships(
    groups: Mapping[str, GroupSpec],
    candidates: Iterable[str],
    aad_object_id: str | None,
    tenant_id: str | None,
    *,
    default_tenant: str | None = None,
) -> set[str]:
    """Names among ``candidates`` whose Teams route lists ``aad_object_id`` in the right
    tenant. Empty when the clicker has no Entra object id."""
    if not aad_object_id:
        return set()
    found: set[str] = set()
    for name in candidates:
        spec = groups.get(name)
        route = spec.teams if spec is not None else None
        if route is None:
            continue
        if not any(_same(user, aad_object_id) for user in route.users):
            continue
        wanted = route.tenant_id or default_tenant
        if wanted and not (tenant_id and _same(wanted, tenant_id)):
            continue
        found.add(name)
    return found


def refresh_user_ids(
    groups: Mapping[str, GroupSpec], names: Iterable[str], people: People = NOBODY
) -> list[str]:
    """Teams user MRIs (``8:orgid:<object id>``) of the approvers of ``names`` (the
    route's ``users`` and the members' Entra ids), for the card's automatic refresh, in
    policy order without duplicates."""
    out: dict[str, None] = {}
    for name in names:
        spec = groups.get(name)
        if spec is not None and spec.teams is not None:
            members = (people.get(key) for key in spec.members)
            ids = (*spec.teams.users, *(p.teams for p in members if p is not None and p.teams))
            for user in ids:
                out.setdefault(_MRI_PREFIX + user, None)
    return list(out)


def tenant_of(conversation: Any, channel_data: Any) -> str | None:
    """The tenant id of an activity: ``conversation.tenantId``, else
    ``channelData.tenant.id`` (Teams sets both)."""
    tenant = getattr(conversation, "tenant_id", None) if conversation is not None else None
    if isinstance(tenant, str) and tenant:
        return tenant
    if isinstance(channel_data, Mapping):
        inner = channel_data.get("tenant")
        if isinstance(inner, Mapping) and isinstance(inner.get("id"), str):
            return str(inner["id"])
    return None


__all__ = ["memberships", "refresh_user_ids", "tenant_of"]
