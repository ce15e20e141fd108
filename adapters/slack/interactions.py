"""Clicks on Slack cards turned into decisions: the slack-bolt ``AsyncApp`` and its listeners.

Every listener acks at once (Slack wants an answer within 3 s) and queues its work in a tracked
task, run at most ``WORKERS`` at a time so a burst of clicks never delays the acks. Bolt runs
with ``process_before_response=True``: since a listener only acks and queues, the HTTP answer
leaves as soon as it returns (bolt's other mode polls for the ack every 10 ms).

The clicker is identified by workspace (team) id + user id, authorised at click time against
the request's groups (``Directory``), and the decision goes through ``Gate.decide``, whose
compare-and-set makes simultaneous clicks produce exactly one final decision. Refusals (not an
approver, the requester, a second vote, already decided) answer the clicker alone with
``chat.postEphemeral`` and change nothing. Replayed payloads (same trigger and action) are
ignored. Approve carries a confirm dialog on the button; Deny opens a modal whose reason is
required. A card that had to cut the arguments approves only through "Review and approve"
(a modal showing them in full, with Approve as its submit); a direct approve on such a card is
refused (SPEC §8). Each vote records what the clicker was shown (``Review``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.cards import (
    ACTION_APPROVE,
    ACTION_CONSOLE,
    ACTION_DENY,
    ACTION_REVIEW,
    ACTION_VIEW_ARGS,
    arguments_cut,
)
from adapters.slack.channel import call_slack
from adapters.slack.directory import Directory
from adapters.slack.modals import (
    EDIT_BLOCK,
    REASON_ACTION,
    REASON_BLOCK,
    VIEW_DENY,
    VIEW_REVIEW,
    DenyOrigin,
    ReviewOrigin,
    arguments_modal,
    deny_modal,
    edited_text,
    review_modal,
)
from adapters.slack.replies import refusal_text, vote_recorded_text
from adapters.slack.seen import SeenSet
from bot.domain import Approver, Platform, Request, Review, Shown, Verdict
from bot.edits import parse_proposal
from bot.errors import ChannelError, Conflict, NotAuthorized, RequestError, SignoffError
from bot.service import CARD_IN_FULL, Gate, StepUpRequired

log = logging.getLogger(__name__)

#: longer than Slack's 5-minute signature window, so a replay is caught while it still verifies
REPLAY_TTL = 15 * 60.0
#: clicks worked on at the same time (the rest wait their turn, already acknowledged)
WORKERS = 2


def interaction_key(body: dict[str, Any]) -> str:
    """What makes one interaction unique: its trigger plus the action (or the view) acted on."""
    kind = str(body.get("type"))
    trigger = str(body.get("trigger_id", ""))
    user = str((body.get("user") or {}).get("id", ""))
    if kind == "view_submission":
        view = body.get("view") or {}
        return f"{kind}:{user}:{trigger}:{view.get('id')}:{view.get('hash')}"
    actions = body.get("actions") or [{}]
    action = actions[0]
    return f"{kind}:{user}:{trigger}:{action.get('action_id')}:{action.get('action_ts')}"


def _team(body: dict[str, Any]) -> str:
    team = body.get("team") or {}
    user = body.get("user") or {}
    return str(team.get("id") or user.get("team_id") or "")


def _channel(body: dict[str, Any]) -> str | None:
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id"
    )
    return str(channel) if channel else None


class Interactions:
    """The bolt app for signoff's cards (HTTP mode at ``/slack/events`` or Socket Mode)."""

    def __init__(
        self,
        gate: Gate,
        client: AsyncWebClient,
        directory: Directory,
        *,
        signing_secret: str,
        console_url: str = "",
    ) -> None:
        self.gate = gate
        self.console_url = console_url
        self.client = client
        self.directory = directory
        self.seen = SeenSet(REPLAY_TTL)
        self._tasks: set[asyncio.Task[None]] = set()
        # Work after the ack runs a few at a time: a burst of clicks then queues its work
        # behind the acks instead of starving them (Slack wants every ack inside 3 s).
        self._working = asyncio.Semaphore(WORKERS)
        bolt_log = logging.getLogger("slack_bolt.signoff")
        bolt_log.addFilter(_drop_token_notice)
        self.app = AsyncApp(
            name="signoff",
            signing_secret=signing_secret,
            client=client,
            process_before_response=True,
            logger=bolt_log,
        )
        self.app.action(ACTION_APPROVE)(self.on_approve)
        self.app.action(ACTION_DENY)(self.on_deny)
        self.app.action(ACTION_VIEW_ARGS)(self.on_view_arguments)
        self.app.action(ACTION_REVIEW)(self.on_review)
        self.app.action(ACTION_CONSOLE)(self.on_console_link)
        self.app.view(VIEW_DENY)(self.on_deny_reason)
        self.app.view(VIEW_REVIEW)(self.on_review_approve)

    # ------------------------------------------------------------------ listeners (ack first)

    async def on_approve(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        if self._fresh(body):
            request_id = str(body["actions"][0].get("value", ""))
            self._spawn(self.decide(body, request_id, Verdict.APPROVE, "", _channel(body)))

    async def on_console_link(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()  # a link button: Slack opens the console; nothing to decide here

    async def on_review(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        if self._fresh(body):
            self._spawn(self._open_review(body))

    async def on_review_approve(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        view = body.get("view") or {}
        try:
            origin = ReviewOrigin.from_metadata(str(view.get("private_metadata") or ""))
        except ValueError:
            await ack()
            log.warning("ignored a review submission without signoff metadata")
            return
        text = edited_text((view.get("state") or {}).get("values") or {})
        if text is not None:
            try:
                parse_proposal(text, "")  # JSON errors show in the modal at once
            except RequestError as exc:
                # Shown under the editor; the modal stays open and nothing is recorded.
                await ack(response_action="errors", errors={EDIT_BLOCK: exc.message[:150]})
                return
        await ack()
        if not self._fresh(body):
            return
        self._spawn(
            self.decide(
                body,
                origin.request_id,
                Verdict.APPROVE,
                "",
                origin.channel,
                review=Review(Shown.FULL, "review_modal", origin.arguments_sha256),
                edited=text,
            )
        )

    async def on_deny(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        if self._fresh(body):
            self._spawn(self._open_deny(body))

    async def on_view_arguments(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        if self._fresh(body):
            self._spawn(self._open_arguments(body))

    async def on_deny_reason(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        view = body.get("view") or {}
        values = (view.get("state") or {}).get("values") or {}
        reason = str(
            ((values.get(REASON_BLOCK) or {}).get(REASON_ACTION) or {}).get("value") or ""
        ).strip()
        if not reason:
            await ack(
                response_action="errors", errors={REASON_BLOCK: "Say why this call must not run."}
            )
            return
        await ack()
        if not self._fresh(body):
            return
        try:
            origin = DenyOrigin.from_metadata(str(view.get("private_metadata") or ""))
        except ValueError:
            log.warning("ignored a deny submission without signoff metadata")
            return
        self._spawn(self.decide(body, origin.request_id, Verdict.DENY, reason, origin.channel))

    # ------------------------------------------------------------------ work after the ack

    async def decide(
        self,
        body: dict[str, Any],
        request_id: str,
        verdict: Verdict,
        reason: str,
        channel: str | None,
        *,
        review: Review | None = None,
        edited: str | None = None,
    ) -> None:
        """Authorise the clicker and record their verdict; refuse with an ephemeral line.
        Without ``review`` the click came from the card itself: it showed the arguments in
        full unless the card had to cut them. ``edited`` is the editor's JSON from the review
        modal (rule option ``editable``): the arguments object, for the request's own tool."""
        user_id = str((body.get("user") or {}).get("id", ""))
        try:
            request = await self._pending(request_id)
            edit = parse_proposal(edited, request.call.tool) if edited is not None else None
            if review is None:
                cut = arguments_cut(request)
                review = Review(Shown.PREVIEW, "card") if cut else CARD_IN_FULL
            approver = await self._identify(body, request)
            memberships = await self._memberships(approver, request)
            stored = await self.gate.decide(
                request_id,
                approver,
                verdict,
                reason,
                memberships=memberships,
                review=review,
                edit=edit,
            )
        except SignoffError as exc:
            self._log_refusal(body, request_id, verdict, exc)
            text = refusal_text(exc)
            if isinstance(exc, StepUpRequired):
                text += f" {self.console_url.rstrip('/')}/console/requests/{request_id}"
            await self._ephemeral(channel, user_id, text)
            return
        log.info(
            "Slack %s by %s:%s recorded on request %s",
            verdict.value,
            _team(body),
            user_id,
            request_id,
        )
        if not stored.status.final:
            votes = await self.gate.votes(request_id)
            await self._ephemeral(channel, user_id, vote_recorded_text(stored, votes))

    async def _pending(self, request_id: str) -> Request:
        request = await self.gate.get(request_id)
        if request.status.final:
            raise Conflict(f"request is already {request.status.value}")
        return request

    async def _identify(self, body: dict[str, Any], request: Request) -> Approver:
        """The clicker as an ``Approver`` (team id + user id, name and e-mail from
        ``users.info``). Raises ``NotAuthorized`` when they may not decide at all."""
        user_id = str((body.get("user") or {}).get("id", ""))
        team = _team(body)
        if not user_id or not team:
            raise NotAuthorized("Slack did not say who you are")
        requested_by = request.call.context.get("requested_by")
        requester = requested_by.strip() if isinstance(requested_by, str) else ""
        try:
            user = await self.directory.user(user_id)
        except ChannelError as exc:
            if requester:
                # Without the profile we cannot rule out self-approval: fail closed.
                self._count("identity_unverified")
                raise NotAuthorized(
                    "signoff could not read your Slack profile to check you did not request "
                    "this call; try again"
                ) from exc
            name = str((body.get("user") or {}).get("name") or user_id)
            return Approver(Platform.SLACK, team, user_id, name, None, via="chat_click")
        if user.deleted or user.is_bot:
            self._count("not_a_person")
            raise NotAuthorized("deactivated accounts and bots cannot decide")
        if requester and "@" in requester and user.email is None:
            # The profile hides the e-mail: ask Slack who owns the requester's address.
            owner = await self.directory.user_by_email(requester)
            if owner is not None and owner.id == user_id:
                self._count("self_approval")
                raise NotAuthorized("you requested this call, so someone else must decide it")
        return Approver(Platform.SLACK, team, user_id, user.name, user.email, via="chat_click")

    async def _memberships(self, approver: Approver, request: Request) -> list[str]:
        """Groups of ``request`` the clicker may decide for: those whose Slack route lists
        them or whose user group holds them, and those listing their person as a member
        (SPEC §5: by Slack id, then by the e-mail Slack reports)."""
        policy = self.gate.policy
        found = await self.directory.memberships(approver.user_id, request.approver_groups, policy)
        mine = policy.people.groups_of(policy.people.resolve(approver))
        return [*found, *(g for g in request.approver_groups if g in mine and g not in found)]

    async def _require_approver(self, body: dict[str, Any], request: Request) -> None:
        """Raise ``NotAuthorized`` unless the clicker is an approver of ``request``."""
        user_id = str((body.get("user") or {}).get("id", ""))
        if not user_id:
            raise NotAuthorized("Slack did not say who you are")
        try:
            user = await self.directory.user(user_id)
            email = None if user.deleted or user.is_bot else user.email
        except ChannelError:
            email = None  # membership by id still counts; by e-mail cannot be checked
        approver = Approver(Platform.SLACK, _team(body), user_id, user_id, email)
        if not await self._memberships(approver, request):
            self._count("not_approver")
            raise NotAuthorized("you are not an approver for this request")

    async def _open_deny(self, body: dict[str, Any]) -> None:
        request_id = str(body["actions"][0].get("value", ""))
        channel = _channel(body)
        user_id = str((body.get("user") or {}).get("id", ""))
        try:
            request = await self._pending(request_id)
            # Check before asking for a reason, so a non-approver is told at once; the
            # authoritative check runs again when the reason is submitted.
            await self._require_approver(body, request)
            await call_slack(
                self.client.views_open(
                    trigger_id=body.get("trigger_id"), view=deny_modal(request, channel)
                ),
                "views.open",
            )
        except SignoffError as exc:
            self._log_refusal(body, request_id, Verdict.DENY, exc)
            await self._ephemeral(channel, user_id, refusal_text(exc))

    async def _open_review(self, body: dict[str, Any]) -> None:
        request_id = str(body["actions"][0].get("value", ""))
        channel = _channel(body)
        user_id = str((body.get("user") or {}).get("id", ""))
        try:
            request = await self._pending(request_id)
            await call_slack(
                self.client.views_open(
                    trigger_id=body.get("trigger_id"),
                    view=review_modal(request, channel, self.console_url),
                ),
                "views.open",
            )
        except SignoffError as exc:
            self._log_refusal(body, request_id, Verdict.APPROVE, exc)
            await self._ephemeral(channel, user_id, refusal_text(exc))

    async def _open_arguments(self, body: dict[str, Any]) -> None:
        request_id = str(body["actions"][0].get("value", ""))
        try:
            request = await self.gate.get(request_id)
            # The full arguments are for the request's approvers only, like the card's
            # channel: a click relayed from elsewhere must not read them.
            await self._require_approver(body, request)
            await call_slack(
                self.client.views_open(
                    trigger_id=body.get("trigger_id"), view=arguments_modal(request)
                ),
                "views.open",
            )
        except SignoffError as exc:
            user_id = str((body.get("user") or {}).get("id", ""))
            log.info(
                "cannot show the arguments of request %s to %s:%s: %s",
                request_id,
                _team(body),
                user_id,
                exc.message,
            )
            await self._ephemeral(_channel(body), user_id, refusal_text(exc))

    # ------------------------------------------------------------------ plumbing

    def _fresh(self, body: dict[str, Any]) -> bool:
        """False for a payload already handled (a replay): it must change nothing."""
        if self.seen.add(interaction_key(body)):
            return True
        log.info(
            "ignored a replayed Slack interaction from %s:%s",
            _team(body),
            (body.get("user") or {}).get("id"),
        )
        return False

    def _count(self, reason: str) -> None:
        self.gate.metrics.refusals.labels(Platform.SLACK.value, reason).inc()

    def _log_refusal(
        self, body: dict[str, Any], request_id: str, verdict: Verdict, exc: SignoffError
    ) -> None:
        user = (body.get("user") or {}).get("id")
        level = logging.INFO if isinstance(exc, (NotAuthorized, Conflict)) else logging.WARNING
        # Never the arguments: the audit record is the attestation, not the log.
        log.log(
            level,
            "Slack %s by %s:%s on request %s refused: %s",
            verdict.value,
            _team(body),
            user,
            request_id,
            exc.diagnostics(),
        )

    async def _ephemeral(self, channel: str | None, user_id: str, text: str) -> None:
        if not channel or not user_id:
            log.info("no channel to tell %s: %s", user_id or "the clicker", text)
            return
        try:
            await call_slack(
                self.client.chat_postEphemeral(channel=channel, user=user_id, text=text),
                "chat.postEphemeral",
            )
        except ChannelError as exc:
            log.warning("cannot answer %s in %s: %s", user_id, channel, exc.message)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        async def run() -> None:
            try:
                async with self._working:
                    await work
            except Exception:
                log.exception("Slack interaction failed")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for work started by clicks (tests, graceful shutdown; callers bound the wait)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))


def _drop_token_notice(record: logging.LogRecord) -> bool:
    """bolt reads ``SLACK_BOT_TOKEN`` from the environment by itself and then warns that the
    token is unused because a client was given; we only ever give the client, so the notice
    is noise at every start."""
    return "`token` will be unused" not in record.getMessage()
