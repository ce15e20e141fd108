"""``TeamsChannel``: the ``ApprovalChannel`` that shows requests in Microsoft Teams channels.

CREATED posts the card to every concerned group that has a ``teams`` route (and records each
copy with ``store.add_post``); VOTED, DECIDED and ESCALATED update every copy in place;
DECIDED and REMINDER reply in the card's thread; ESCALATED posts to the added groups; PAGE
posts to ``teams.escalation_conversation_id`` when configured (else it is Slack's and
PagerDuty's job). Work on one request is serialised and always renders the request as
stored *now*, so notices delivered out of order still leave every copy current. A copy that
fails does not stop the others; the failure is raised as ``ChannelError`` at the end, and a
card that could not be posted to a group is reported to ``on_undeliverable``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from microsoft_agents.activity import Activity, Attachment, ChannelAccount, Entity, Mention

from adapters.teams.approvers import refresh_user_ids
from adapters.teams.cards import CARD_CONTENT_TYPE, approval_card, when
from adapters.teams.connector import Connector
from adapters.teams.text import escape_markdown, for_log
from bot.domain import Platform, Post, Request, Status, Verdict, Vote
from bot.errors import ChannelError, StoreError
from bot.locks import KeyedLocks
from bot.policy.model import TeamsRoute
from bot.ports import Notice, NoticeKind, Routes, Undeliverable
from bot.service import Gate

log = logging.getLogger(__name__)

#: the kind of learned route: a conversation's Bot Framework service URL
ROUTE_KIND = "service_url"
_MENTION_LIMIT = 20


@dataclass(frozen=True, slots=True)
class Target:
    """Where escalation pages go."""

    service_url: str
    conversation_id: str


def base_conversation(conversation_id: str) -> str:
    """A channel conversation id without the thread suffix (``;messageid=…``)."""
    return conversation_id.split(";", 1)[0]


def card_activity(card: dict[str, Any]) -> Activity:
    """A message activity carrying one Adaptive Card."""
    return Activity(
        type="message",
        attachments=[Attachment(content_type=CARD_CONTENT_TYPE, content=card)],
    )


class TeamsChannel:
    """Posts and keeps current the approval cards of one app registration."""

    platform = Platform.TEAMS

    def __init__(
        self,
        gate: Gate,
        connector: Connector,
        *,
        escalation: Target | None = None,
        routes: Routes | None = None,
        console_url: str = "",
        on_undeliverable: Undeliverable | None = None,
    ) -> None:
        self.gate = gate
        #: told about a card that could not be posted to a group (escalation may act sooner)
        self.on_undeliverable = on_undeliverable
        self.console_url = console_url
        self.connector = connector
        self.escalation = escalation
        #: where learned service URLs persist (shared by every replica); None: memory only
        self.routes = routes
        #: conversation id → service URL Teams gave us for it (installation / any activity),
        #: as this process learned or last read it
        self.references: dict[str, str] = {}
        #: Entra object id → display name, learned from activities, for mentions
        self.names: dict[str, str] = {}
        self._locks = KeyedLocks()

    # ------------------------------------------------------------------ learned state

    async def remember(self, conversation_id: str, service_url: str) -> None:
        """Use ``service_url`` for ``conversation_id`` from now on (Teams told us so in an
        authenticated activity; it wins over the policy's value, which can go stale). Stored,
        so every replica and a restarted process use it too."""
        key = base_conversation(conversation_id)
        if self.references.get(key) == service_url:
            return
        log.info("Teams: conversation %s is served at %s", for_log(key), for_log(service_url))
        self.references[key] = service_url
        if self.routes is not None:
            try:
                await self.routes.remember(
                    "teams", ROUTE_KIND, key, service_url, at=self.gate.now()
                )
            except StoreError as exc:  # the activity itself still counts; retried next time
                self.references.pop(key, None)
                log.warning("Teams: could not store the service URL: %s", exc.diagnostics())

    async def _learned(self, conversation_id: str) -> str | None:
        key = base_conversation(conversation_id)
        if self.routes is not None:
            stored = await self.routes.lookup("teams", ROUTE_KIND, key)
            if stored is not None:
                self.references[key] = stored
                return stored
        return self.references.get(key)

    async def service_url(self, route: TeamsRoute) -> str:
        return await self._learned(route.conversation_id) or route.service_url

    def card(
        self, request: Request, votes: Sequence[Vote], note: str | None = None
    ) -> dict[str, Any]:
        """The card for ``request`` as it stands, with refresh for its Teams approvers."""
        policy = self.gate.policy
        return approval_card(
            request,
            votes,
            note=note,
            refresh_users=refresh_user_ids(policy.groups, request.approver_groups, policy.people),
            console_url=self.console_url,
        )

    # ------------------------------------------------------------------ ApprovalChannel

    async def deliver(self, notice: Notice) -> None:
        """Raises ``ChannelError`` when any copy could not be posted or updated."""
        request_id = notice.request.id
        async with self._locks.hold(request_id):
            failures: list[str] = []
            kind = notice.kind
            fresh: set[str] = set()
            if kind in (NoticeKind.CREATED, NoticeKind.ESCALATED):
                fresh = await self._post_cards(request_id, notice.groups, failures)
            if kind in (NoticeKind.VOTED, NoticeKind.DECIDED, NoticeKind.ESCALATED):
                await self._update_copies(request_id, failures, skip=fresh)
            if kind is NoticeKind.DECIDED:
                await self._reply_outcome(request_id, failures)
            elif kind is NoticeKind.REMINDER:
                await self._remind(notice, failures)
            elif kind is NoticeKind.PAGE:
                await self._page(notice.request, failures)
            if failures:
                raise ChannelError(
                    f"Teams: {len(failures)} delivery step(s) failed for request {request_id}: "
                    + "; ".join(failures[:3])
                )

    async def _state(self, request_id: str) -> tuple[Request, list[Vote]]:
        view = await self.gate.view(request_id)
        return view.request, list(view.votes)

    def _routes(self, names: Iterable[str]) -> list[tuple[str, TeamsRoute]]:
        groups = self.gate.policy.groups
        out = []
        for name in names:
            spec = groups.get(name)
            if spec is not None and spec.teams is not None:
                out.append((name, spec.teams))
        return out

    async def _post_cards(
        self, request_id: str, names: Sequence[str], failures: list[str]
    ) -> set[str]:
        request, votes = await self._state(request_id)
        posted = {p.group for p in await self.gate.posts(request_id, Platform.TEAMS)}
        card = self.card(request, votes)
        fresh: set[str] = set()
        for group, route in self._routes(names):
            if group in posted:
                continue  # a repeated notice (restart, retry) never posts twice
            service_url = await self.service_url(route)
            try:
                activity_id = await self.connector.send(
                    service_url, route.conversation_id, card_activity(card)
                )
            except ChannelError as exc:
                failures.append(f"post to group {group}: {exc.message}")
                await self._undeliverable(request, group, exc)
                continue
            await self.gate.record_post(
                Post(
                    request_id,
                    Platform.TEAMS,
                    group,
                    route.conversation_id,
                    activity_id,
                    extra={"service_url": service_url},
                )
            )
            fresh.add(activity_id)
        return fresh

    async def _undeliverable(self, request: Request, group: str, error: ChannelError) -> None:
        if self.on_undeliverable is None:
            return
        try:
            await self.on_undeliverable(request, group, error)
        except Exception:
            log.exception("on_undeliverable hook failed for request %s", request.id)

    async def _update_copies(
        self, request_id: str, failures: list[str], *, skip: Collection[str] = ()
    ) -> None:
        request, votes = await self._state(request_id)
        card = self.card(request, votes)
        for post in await self.gate.posts(request_id, Platform.TEAMS):
            if post.message_id in skip:
                continue
            try:
                await self.connector.update(
                    await self._post_url(post), post.channel, post.message_id, card_activity(card)
                )
            except ChannelError as exc:
                failures.append(f"update in group {post.group}: {exc.message}")

    async def _post_url(self, post: Post) -> str:
        return await self._learned(post.channel) or str(post.extra.get("service_url", ""))

    async def _reply(self, post: Post, activity: Activity, failures: list[str]) -> None:
        try:
            await self.connector.reply(
                await self._post_url(post), post.channel, post.message_id, activity
            )
        except ChannelError as exc:
            failures.append(f"reply in group {post.group}: {exc.message}")

    async def _reply_outcome(self, request_id: str, failures: list[str]) -> None:
        request, votes = await self._state(request_id)
        text = outcome_text(request, votes)
        for post in await self.gate.posts(request_id, Platform.TEAMS):
            await self._reply(post, Activity(type="message", text=text), failures)

    async def _remind(self, notice: Notice, failures: list[str]) -> None:
        request, _ = await self._state(notice.request.id)
        if request.status.final:
            return
        wanted = set(notice.groups) or set(request.approver_groups)
        routes = dict(self._routes(wanted))
        for post in await self.gate.posts(request.id, Platform.TEAMS):
            route = routes.get(post.group)
            if route is None:
                continue
            await self._reply(post, self.reminder(request, post.group, route), failures)

    def reminder(self, request: Request, group: str, route: TeamsRoute) -> Activity:
        """A thread reply that @mentions the group's approvers."""
        mentions: list[Entity] = []
        tags: list[str] = []
        for user in route.users[:_MENTION_LIMIT]:
            name = self.names.get(user, "approver").replace("<", "").replace(">", "")
            tag = f"<at>{name}</at>"
            tags.append(tag)
            mentions.append(Mention(mentioned=ChannelAccount(id=user, name=name), text=tag))
        text = (
            f"Reminder: this request from agent {escape_markdown(request.agent_id)} still needs "
            f"a decision from group {escape_markdown(group)} before {when(request.deadline)}. "
            + " ".join(tags)
        )
        return Activity(type="message", text=text, entities=mentions)

    async def _page(self, request: Request, failures: list[str]) -> None:
        if self.escalation is None:
            return
        text = (
            f"Escalation: request {request.id} ({escape_markdown(request.call.tool)} by agent "
            f"{escape_markdown(request.agent_id)}) has no decision yet; deadline "
            f"{when(request.deadline)}."
        )
        try:
            await self.connector.send(
                self.escalation.service_url,
                self.escalation.conversation_id,
                Activity(type="message", text=text),
            )
        except ChannelError as exc:
            failures.append(f"page: {exc.message}")


def outcome_text(request: Request, votes: Sequence[Vote]) -> str:
    """The thread reply for a final request (Markdown, every human/agent value escaped)."""
    status = request.status
    parts = [f"**{status.value.capitalize()}** at {when(request.decided_at)}"]
    verdict = Verdict.APPROVE if status is Status.APPROVED else Verdict.DENY
    deciders = [
        escape_markdown(v.approver.display_name or v.approver.user_id)
        for v in votes
        if v.verdict is verdict
    ]
    if deciders and status in (Status.APPROVED, Status.DENIED):
        parts.append("by " + ", ".join(deciders))
    text = " ".join(parts) + "."
    if request.reason:
        text += f" Reason: {escape_markdown(request.reason)}"
    if request.last_log_index is not None:
        text += f" (attestation log index {request.last_log_index})"
    return text


__all__ = ["Target", "TeamsChannel", "base_conversation", "card_activity", "outcome_text"]
