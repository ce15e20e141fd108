"""Who a Slack user is and which approver groups they belong to, checked at click time.

A clicker belongs to a policy group when their user id is listed in the group's ``slack.users``
or is a member of its ``slack.usergroup`` (``usergroups.users.list``). Answers are cached for
a short TTL (``slack.usergroup_ttl``); a failed lookup is never cached and counts as "not a
member" (fail closed). Concurrent lookups of the same key share one API call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import ChannelError
from bot.policy.model import Policy

log = logging.getLogger(__name__)

T = TypeVar("T")
_MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class SlackUser:
    id: str
    team_id: str
    name: str
    email: str | None
    deleted: bool = False
    is_bot: bool = False


class TtlCache(Generic[T]):
    """A small TTL cache whose loads are single-flight and whose failures are not kept."""

    def __init__(self, ttl: float, now: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.now = now
        self._values: dict[str, tuple[float, T]] = {}
        self._loading: dict[str, asyncio.Future[T]] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        hit = self._values.get(key)
        if hit is not None and hit[0] > self.now():
            return hit[1]
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so an unawaited failure is not reported
            raise
        else:
            if len(self._values) >= _MAX_ENTRIES:
                self._values.clear()
            self._values[key] = (self.now() + self.ttl, value)
            future.set_result(value)
            return value
        finally:
            del self._loading[key]

    def forget(self, key: str) -> None:
        self._values.pop(key, None)


class Directory:
    """Slack users and user groups, as far as approval decisions need them."""

    def __init__(
        self, client: AsyncWebClient, *, ttl: float, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self._groups: TtlCache[frozenset[str]] = TtlCache(ttl, now)
        self._users: TtlCache[SlackUser] = TtlCache(ttl, now)

    async def usergroup_members(self, usergroup: str) -> frozenset[str]:
        """User ids in ``usergroup``. Raises ``ChannelError`` (not cached) on any failure."""

        async def load() -> frozenset[str]:
            data = await _call(
                self.client.usergroups_users_list(usergroup=usergroup), "usergroups.users.list"
            )
            users = data.get("users")
            if not isinstance(users, list):
                raise ChannelError("usergroups.users.list answered without a user list")
            return frozenset(str(u) for u in users)

        return await self._groups.get(usergroup, load)

    async def user(self, user_id: str) -> SlackUser:
        """The profile of ``user_id`` (``users.info``). Raises ``ChannelError`` on failure."""

        async def load() -> SlackUser:
            data = await _call(self.client.users_info(user=user_id), "users.info")
            return _to_user(data.get("user"))

        return await self._users.get(user_id, load)

    async def user_by_email(self, email: str) -> SlackUser | None:
        """The user with ``email`` (``users.lookupByEmail``), None when there is none.
        Raises ``ChannelError`` when Slack cannot answer."""
        try:
            data = await self.client.users_lookupByEmail(email=email)
        except SlackApiError as exc:
            if exc.response.get("error") == "users_not_found":
                return None
            raise ChannelError(f"users.lookupByEmail failed: {exc.response.get('error')}") from exc
        except (SlackClientError, OSError, TimeoutError) as exc:
            raise ChannelError(f"users.lookupByEmail failed: {type(exc).__name__}") from exc
        return _to_user(data.get("user"))

    async def memberships(self, user_id: str, groups: Iterable[str], policy: Policy) -> list[str]:
        """The names among ``groups`` whose Slack route lists ``user_id`` or whose user group
        contains it. A user group that cannot be read does not count (fail closed)."""
        found: list[str] = []
        for name in groups:
            spec = policy.groups.get(name)
            route = spec.slack if spec is not None else None
            if route is None:
                continue
            if user_id in route.users:
                found.append(name)
                continue
            if route.usergroup:
                try:
                    members = await self.usergroup_members(route.usergroup)
                except ChannelError as exc:
                    log.warning(
                        "cannot read Slack user group %s of group %s: %s",
                        route.usergroup,
                        name,
                        exc.message,
                    )
                    continue
                if user_id in members:
                    found.append(name)
        return found


async def _call(call: Awaitable[Any], method: str) -> Any:
    try:
        response = await call
    except SlackApiError as exc:
        raise ChannelError(f"{method} failed: {exc.response.get('error')}") from exc
    except (SlackClientError, OSError, TimeoutError) as exc:
        raise ChannelError(f"{method} failed: {type(exc).__name__}") from exc
    return response


def _to_user(raw: Any) -> SlackUser:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise ChannelError("Slack answered without a user object")
    found = raw.get("profile")
    profile: dict[str, Any] = found if isinstance(found, dict) else {}
    name = profile.get("display_name") or profile.get("real_name") or raw.get("name") or raw["id"]
    email = profile.get("email")
    return SlackUser(
        id=raw["id"],
        team_id=str(raw.get("team_id") or ""),
        name=str(name),
        email=email if isinstance(email, str) and email else None,
        deleted=bool(raw.get("deleted")),
        is_bot=bool(raw.get("is_bot")),
    )
