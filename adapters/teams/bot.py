"""``ApprovalBot``: what signoff does with activities Teams sends (an Agents SDK
``ActivityHandler``).

``adaptiveCard/action`` invokes carry the card's ``Action.Execute``: ``approve`` and ``deny``
become ``gate.decide`` for the clicker (``from.aadObjectId`` in the conversation's tenant,
checked against the groups' Entra ids by ``approvers.memberships``); ``refresh`` returns the
current card; ``review`` (the approve action of a card that cut the arguments) answers with
the review card holding them whole, whose Approve carries the digest reviewed. An ``approve``
from a card that cut the arguments, without that digest, is refused. The invoke answers
with the refreshed card, shown to the clicker only; a refusal (not an approver,
self-approval, a second vote, a replay, a final request, deny without reason) answers
with the unchanged card and a note saying why, and changes nothing.
Every other copy is updated by ``TeamsChannel`` when the gate publishes the change.
Messages get a short help reply; installations and messages teach the channel the
conversation's service URL (only when inbound authentication is on).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from microsoft_agents.activity import (
    Activity,
    AdaptiveCardInvokeResponse,
    AdaptiveCardInvokeValue,
)
from microsoft_agents.hosting.core import ActivityHandler, TurnContext

from adapters.teams.approvers import memberships, tenant_of
from adapters.teams.cards import (
    APPROVE_VERB,
    CARD_CONTENT_TYPE,
    DENY_VERB,
    EDITED_INPUT,
    ERROR_CONTENT_TYPE,
    REASON_INPUT,
    REFRESH_VERB,
    REVIEW_VERB,
    REVIEWED,
    arguments_cut,
    review_card,
)
from adapters.teams.channel import TeamsChannel, base_conversation
from adapters.teams.text import escape_markdown, for_log
from bot.domain import Approver, Platform, Request, Review, Shown, Verdict
from bot.edits import parse_proposal
from bot.errors import Conflict, NotAuthorized, NotFound, RequestError
from bot.service import CARD_IN_FULL, Gate

log = logging.getLogger(__name__)

_NAMES_LIMIT = 10_000
_VERDICTS = {APPROVE_VERB: Verdict.APPROVE, DENY_VERB: Verdict.DENY}


def _error(status: HTTPStatus, code: str, message: str) -> AdaptiveCardInvokeResponse:
    return AdaptiveCardInvokeResponse(
        status_code=int(status), type=ERROR_CONTENT_TYPE, value={"code": code, "message": message}
    )


def _same_tenant(tenant: str, wanted: str) -> bool:
    return tenant.strip().casefold() == wanted.strip().casefold()


def _card(card: dict[str, Any]) -> AdaptiveCardInvokeResponse:
    return AdaptiveCardInvokeResponse(status_code=200, type=CARD_CONTENT_TYPE, value=card)


class ApprovalBot(ActivityHandler):
    """Turns Teams activities into gate decisions and card views."""

    def __init__(
        self,
        gate: Gate,
        channel: TeamsChannel,
        *,
        default_tenant: str | None = None,
        learn_references: bool = True,
        console_url: str = "",
    ) -> None:
        self.gate = gate
        self.console_url = console_url
        self.channel = channel
        self.default_tenant = default_tenant
        self.learn_references = learn_references

    async def on_turn(self, turn_context: TurnContext) -> None:  # type: ignore[override]
        await self._learn(turn_context.activity)
        await super().on_turn(turn_context)

    async def _learn(self, activity: Activity) -> None:
        sender = activity.from_property
        if (
            sender is not None
            and sender.aad_object_id
            and sender.name
            and len(self.channel.names) < _NAMES_LIMIT
        ):
            self.channel.names[sender.aad_object_id] = sender.name
        conversation = activity.conversation
        if not (self.learn_references and conversation is not None and activity.service_url):
            return
        tenant = tenant_of(conversation, activity.channel_data)
        if self.default_tenant and (tenant or "").casefold() != self.default_tenant.casefold():
            return  # only our own tenant's conversations may say where cards go
        await self.channel.remember(conversation.id, activity.service_url)

    async def on_message_activity(self, turn_context: TurnContext) -> None:  # type: ignore[override]
        conversation = turn_context.activity.conversation
        where = base_conversation(conversation.id) if conversation is not None else "?"
        await turn_context.send_activity(
            "signoff posts approval cards here and records decisions made with their buttons. "
            f"To route a policy group here, use conversation\\_id {escape_markdown(where)} and "
            f"service\\_url {escape_markdown(turn_context.activity.service_url or '?')}."
        )

    async def on_installation_update_add(self, turn_context: TurnContext) -> None:  # type: ignore[override]
        conversation = turn_context.activity.conversation
        log.info(
            "Teams: app installed in conversation %s (service URL %s)",
            for_log(conversation.id if conversation is not None else None),
            for_log(turn_context.activity.service_url),
        )

    async def on_adaptive_card_invoke(  # type: ignore[override]
        self, turn_context: TurnContext, invoke_value: AdaptiveCardInvokeValue
    ) -> AdaptiveCardInvokeResponse:
        action = invoke_value.action
        data = action.data or {}
        request_id = data.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            return _error(HTTPStatus.BAD_REQUEST, "BadRequest", "the card names no request")
        verb = action.verb or ""
        if verb not in (REFRESH_VERB, REVIEW_VERB) and verb not in _VERDICTS:
            return _error(HTTPStatus.BAD_REQUEST, "NotSupported", f"unknown action {verb!r}")
        try:
            request = await self.gate.get(request_id)
        except NotFound:
            return _error(HTTPStatus.NOT_FOUND, "NotFound", "this request no longer exists")
        if verb == REFRESH_VERB:
            votes = await self.gate.votes(request_id)
            return _card(self.channel.card(request, votes))
        if verb == REVIEW_VERB:
            return _card(review_card(request, self.console_url))

        activity = turn_context.activity
        sender = activity.from_property
        aad = (sender.aad_object_id if sender is not None else None) or ""
        name = (sender.name if sender is not None else None) or ""
        tenant = tenant_of(activity.conversation, activity.channel_data) or ""
        groups = memberships(
            self.gate.policy.groups,
            request.approver_groups,
            aad,
            tenant,
            default_tenant=self.default_tenant,
        )
        approver = Approver(Platform.TEAMS, tenant, aad, name, via="chat_click")
        reason = data.get(REASON_INPUT)
        edited = data.get(EDITED_INPUT)
        try:
            if self.default_tenant and not _same_tenant(tenant, self.default_tenant):
                # An Entra object id only names a person inside our own tenant.
                raise NotAuthorized(
                    "you are not an approver for this request (the click came from another "
                    "Microsoft 365 tenant)"
                )
            review = _review(request, data.get(REVIEWED))
            edit = (
                parse_proposal(edited, request.call.tool)
                if isinstance(edited, str) and edited.strip() and verb == APPROVE_VERB
                else None
            )
            decided = await self.gate.decide(
                request_id,
                approver,
                _VERDICTS[verb],
                reason if isinstance(reason, str) else "",
                memberships=groups,
                review=review,
                edit=edit,
            )
        except (NotAuthorized, Conflict, RequestError) as exc:
            # NotFound is a RequestError too, but the request was just read: a refusal.
            log.warning(
                "Teams: %s on request %s by %s (tenant %s) refused: %s",
                verb,
                request_id,
                for_log(aad),
                for_log(tenant),
                for_log(exc.message, 500),
            )
            current = await self.gate.get(request_id)
            votes = await self.gate.votes(request_id)
            return _card(
                self.channel.card(current, votes, note=f"Nothing was recorded: {exc.message}.")
            )
        votes = await self.gate.votes(request_id)
        log.info("Teams: %s recorded on request %s by %s", verb, request_id, for_log(aad))
        return _card(self.channel.card(decided, votes))


def _review(request: Request, reviewed: object) -> Review:
    """What the clicker saw: the review card (its Approve names the digest it showed; the
    gate refuses it when the arguments changed since), the whole card, or a card that cut
    the arguments."""
    if isinstance(reviewed, str):
        return Review(Shown.FULL, "review_card", reviewed)
    return Review(Shown.PREVIEW, "card") if arguments_cut(request) else CARD_IN_FULL


__all__ = ["ApprovalBot"]
