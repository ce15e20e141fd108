"""``SlackChannel``: the ``ApprovalChannel`` that keeps Slack cards true to each request.

CREATED posts one card per group channel and stores each copy as a ``Post``; VOTED and
DECIDED rewrite every copy with ``chat.update`` (DECIDED also replies in each card's thread);
REMINDER replies in the thread mentioning the group; ESCALATED posts cards to the new group;
PAGE posts an ``<!here>`` message to ``slack.escalation_channel``.

Notices arrive in background tasks and may run out of order, so every change is rendered
from the request as the gate holds it *now*, under a per-request lock (``bot.locks``): a
late VOTED never puts buttons back on a decided card, and a card posted after the decision
is posted (or at once updated) final. A card that cannot be delivered after retries is
logged, reported to the ``on_undeliverable`` hook (escalation may act sooner) and raised as
``ChannelError`` (the Gate counts it in ``signoff_channel_errors``); nothing is ever allowed
because Slack failed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Sequence
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.cards import Card, build_card
from adapters.slack.replies import decision_reply, page_text, reminder_text
from adapters.slack.seen import SeenSet
from bot.domain import Platform, Post, Request, Tier, Vote
from bot.errors import ChannelError
from bot.locks import KeyedLocks
from bot.policy.model import SlackRoute
from bot.ports import Notice, NoticeKind, Undeliverable
from bot.service import Gate

log = logging.getLogger(__name__)


async def call_slack(call: Awaitable[Any], method: str) -> Any:
    """Await one Web API call (retries happen inside the client). Raises ``ChannelError``."""
    try:
        return await call
    except SlackApiError as exc:
        raise ChannelError(f"{method} failed: {exc.response.get('error')}") from exc
    except (SlackClientError, OSError, TimeoutError, ValueError) as exc:
        raise ChannelError(f"{method} failed: {type(exc).__name__}: {exc}") from exc


class SlackChannel:
    """Posts and maintains approval cards in Slack (``bot.ports.ApprovalChannel``)."""

    platform = Platform.SLACK

    def __init__(
        self,
        gate: Gate,
        client: AsyncWebClient,
        *,
        escalation_channel: str | None = None,
        console_url: str = "",
        on_undeliverable: Undeliverable | None = None,
    ) -> None:
        self.gate = gate
        self.console_url = console_url
        self.client = client
        self.escalation_channel = escalation_channel
        self.on_undeliverable = on_undeliverable
        self._locks = KeyedLocks()
        self._replied = SeenSet(ttl=7 * 24 * 3600.0)

    # ------------------------------------------------------------------ the port

    async def deliver(self, notice: Notice) -> None:
        """Post, update or reply as ``notice`` requires. Raises ``ChannelError`` naming what
        could not be delivered (after the client's retries)."""
        request_id = notice.request.id
        if notice.kind is NoticeKind.PAGE:
            await self._page(request_id)
            return
        async with self._locks.hold(request_id):
            if notice.kind is NoticeKind.CREATED:
                await self._post_cards(request_id, notice.groups)
            elif notice.kind is NoticeKind.ESCALATED:
                await self._post_cards(request_id, notice.groups)
                await self._refresh(request_id)
            elif notice.kind is NoticeKind.REMINDER:
                await self._remind(request_id, notice.groups)
            else:  # VOTED, DECIDED
                await self._refresh(request_id)

    # ------------------------------------------------------------------ internals

    def _route(self, group: str) -> SlackRoute | None:
        spec = self.gate.policy.groups.get(group)
        return spec.slack if spec is not None else None

    async def _state(self, request_id: str) -> tuple[Request, tuple[Vote, ...]]:
        view = await self.gate.view(request_id)
        return view.request, view.votes

    async def _posts(self, request_id: str) -> list[Post]:
        return await self.gate.posts(request_id, Platform.SLACK)

    async def _post_cards(self, request_id: str, groups: Sequence[str]) -> None:
        request, votes = await self._state(request_id)
        have = {p.group for p in await self._posts(request_id)}
        card = build_card(request, votes, self.console_url)
        posted: list[Post] = []
        failures: list[str] = []
        for group in dict.fromkeys(groups):
            route = self._route(group)
            if group in have or route is None or not route.channel:
                continue
            try:
                post = await self._post_card(request, group, route.channel, card)
            except ChannelError as exc:
                failures.append(f"{group} ({route.channel}): {exc.message}")
                await self._undeliverable(request, group, exc)
                continue
            posted.append(post)
        if posted:
            # A decision may have landed while we were posting: bring these copies up to date
            # (the DECIDED handler could not see them yet).
            latest, votes = await self._state(request_id)
            if latest.version != request.version:
                fresh = build_card(latest, votes, self.console_url)
                for post in posted:
                    with contextlib.suppress(ChannelError):
                        await self._update(post, fresh)
            if latest.status.final:
                failures += await self._reply_decision(latest, votes, posted)
        if failures:
            raise ChannelError("Slack card not delivered: " + "; ".join(failures))

    async def _post_card(self, request: Request, group: str, channel: str, card: Card) -> Post:
        answer = await call_slack(
            self.client.chat_postMessage(
                channel=channel,
                text=card.text,
                blocks=card.block_dicts(),
                unfurl_links=False,
                unfurl_media=False,
            ),
            "chat.postMessage",
        )
        ts = str(answer["ts"])
        post = Post(
            request.id,
            Platform.SLACK,
            group,
            str(answer.get("channel") or channel),
            ts,
            thread_id=ts,
        )
        await self.gate.record_post(post)
        return post

    async def _update(self, post: Post, card: Card) -> None:
        await call_slack(
            self.client.chat_update(
                channel=post.channel,
                ts=post.message_id,
                text=card.text,
                blocks=card.block_dicts(),
            ),
            "chat.update",
        )

    async def _refresh(self, request_id: str) -> None:
        request, votes = await self._state(request_id)
        posts = await self._posts(request_id)
        card = build_card(request, votes, self.console_url)
        failures: list[str] = []
        for post in posts:
            try:
                await self._update(post, card)
            except ChannelError as exc:
                log.warning(
                    "cannot update the Slack card of request %s in %s: %s",
                    request_id,
                    post.channel,
                    exc.message,
                )
                failures.append(f"{post.group} ({post.channel}): {exc.message}")
        if request.status.final:
            failures += await self._reply_decision(request, votes, posts)
        if failures:
            raise ChannelError("Slack card not updated: " + "; ".join(failures))

    async def _reply_decision(
        self, request: Request, votes: Sequence[Vote], posts: Sequence[Post]
    ) -> list[str]:
        if request.tier is not Tier.CONFIRM:
            return []
        failures = []
        text = decision_reply(request, votes)
        for post in posts:
            key = f"{request.id}|{post.channel}|{post.message_id}"
            if not self._replied.add(key):
                continue
            try:
                await self._reply(post, text)
            except ChannelError as exc:
                self._replied.discard(key)
                failures.append(f"{post.group} thread: {exc.message}")
        return failures

    async def _reply(self, post: Post, text: str) -> None:
        await call_slack(
            self.client.chat_postMessage(
                channel=post.channel,
                thread_ts=post.thread_id or post.message_id,
                text=text,
                unfurl_links=False,
                unfurl_media=False,
            ),
            "chat.postMessage",
        )

    async def _remind(self, request_id: str, groups: Sequence[str]) -> None:
        request, _ = await self._state(request_id)
        if request.status.final:
            return
        wanted = list(groups) or list(request.approver_groups)
        posts = await self._posts(request_id)
        failures: list[str] = []
        for post in posts:
            if post.group not in wanted:
                continue
            try:
                await self._reply(post, reminder_text(request, post.group, self._route(post.group)))
            except ChannelError as exc:
                failures.append(f"{post.group} reminder: {exc.message}")
        # A group whose card never landed gets another try now.
        missing = [g for g in wanted if g not in {p.group for p in posts}]
        if missing:
            try:
                await self._post_cards(request_id, missing)
            except ChannelError as exc:
                failures.append(exc.message)
        if failures:
            raise ChannelError("Slack reminder not delivered: " + "; ".join(failures))

    async def _page(self, request_id: str) -> None:
        if not self.escalation_channel:
            log.warning(
                "request %s needs a page but slack.escalation_channel is not set", request_id
            )
            return
        request = await self.gate.get(request_id)
        posts = await self._posts(request_id)
        await call_slack(
            self.client.chat_postMessage(
                channel=self.escalation_channel,
                text=page_text(request, posts),
                unfurl_links=False,
                unfurl_media=False,
            ),
            "chat.postMessage",
        )

    async def _undeliverable(self, request: Request, group: str, error: ChannelError) -> None:
        log.warning(
            "Slack card for request %s to group %s not delivered: %s",
            request.id,
            group,
            error.message,
        )
        if self.on_undeliverable is None:
            return
        try:
            await self.on_undeliverable(request, group, error)
        except Exception:
            log.exception("on_undeliverable hook failed for request %s", request.id)
