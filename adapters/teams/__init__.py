"""Microsoft Teams adapter (SPEC §4 ``teams:``, §5 group ``teams:``, §8): Adaptive Card
approvals through the Microsoft 365 Agents SDK.

``mount(wiring)`` is called when ``teams.app_id`` is set and returns ``POST /api/messages``
(inbound tokens verified by the SDK unless ``teams.insecure_dev_disable_auth``) and the
``TeamsChannel``, whose outbound calls go through the SDK's connector client authenticated
with the app's client credentials. This package may import ``bot`` and
``microsoft_agents``; ``bot`` never imports it.
"""

from __future__ import annotations

import ipaddress
import logging

from aiohttp import web
from microsoft_agents.hosting.aiohttp import CloudAdapter
from microsoft_agents.hosting.core import RestChannelServiceClientFactory
from microsoft_agents.hosting.core.authorization import AnonymousTokenProvider

from adapters.runtime import Mounted, Wiring
from adapters.teams.auth import InboundAuth
from adapters.teams.bot import ApprovalBot
from adapters.teams.channel import Target, TeamsChannel
from adapters.teams.connector import Connector
from adapters.teams.endpoint import PATH, MessagesEndpoint
from adapters.teams.tokens import ClientCredentials, SingleConnection
from bot.errors import ConfigError
from bot.settings import TeamsSettings

log = logging.getLogger(__name__)


def _refuse_unless_loopback(host: str) -> None:
    """Raises ``ConfigError`` unless ``host`` binds to loopback only: with inbound checks off,
    anyone who can reach the port approves as anyone."""
    name = host.strip().strip("[]")
    if name.casefold() == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(name).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"teams.insecure_dev_disable_auth needs server.host on loopback (127.0.0.1 or ::1), "
            f"not {host!r}: with it, anyone who can reach the server approves as anyone"
        )


def mount(wiring: Wiring) -> Mounted[TeamsChannel]:
    """``POST /api/messages`` and the Teams channel. Raises ``ConfigError`` when
    ``teams.app_id`` is missing, or when ``teams.insecure_dev_disable_auth`` is set on a
    server not bound to loopback."""
    settings: TeamsSettings = wiring.settings.teams
    if not settings.app_id:
        raise ConfigError("teams.app_id is required to run the Teams adapter")
    secure = not settings.insecure_dev_disable_auth
    if not secure:
        _refuse_unless_loopback(wiring.settings.server.host)
        log.warning(
            "!!! teams.insecure_dev_disable_auth is set: POST %s accepts activities WITHOUT "
            "verifying who sent them. Anyone who can reach this server can approve requests "
            "as any Teams user. Never use this outside local development. !!!",
            PATH,
        )
    password = settings.app_password.reveal() if settings.app_password else ""
    provider = (
        ClientCredentials(
            settings.app_id, password, tenant_id=settings.tenant_id, token_url=settings.token_url
        )
        if password
        else AnonymousTokenProvider()
    )
    if not password:
        log.warning(
            "teams.app_password is not set: outbound calls to Teams go unauthenticated and "
            "only work against a local emulator"
        )
    factory = RestChannelServiceClientFactory(SingleConnection(provider))
    adapter = CloudAdapter(channel_service_client_factory=factory)
    connector = Connector(factory, settings.app_id, anonymous=not password)
    escalation = (
        Target(settings.escalation_service_url, settings.escalation_conversation_id)
        if settings.escalation_service_url and settings.escalation_conversation_id
        else None
    )
    channel = TeamsChannel(
        wiring.gate,
        connector,
        escalation=escalation,
        routes=wiring.routes,
        console_url=wiring.settings.server.public_url,
        on_undeliverable=wiring.undeliverable,
    )
    bot = ApprovalBot(
        wiring.gate,
        channel,
        default_tenant=settings.tenant_id,
        learn_references=secure,
        console_url=wiring.settings.server.public_url,
    )
    auth = InboundAuth(
        settings.app_id,
        tenant_id=settings.tenant_id,
        jwks_url=settings.jwks_url,
        enabled=secure,
    )
    log.info("Teams adapter on: %s (app %s)", PATH, settings.app_id)
    return Mounted(
        channel,
        channel=channel,
        routes=(web.post(PATH, MessagesEndpoint(adapter, bot, auth).handle),),
    )


__all__ = ["TeamsChannel", "mount"]
