"""The email channel (SPEC §4, §8): approval messages with signed one-time links, and the
page those links open. On when ``email.smtp_url`` is set.

``mount`` returns the ``EmailChannel`` and the ``/email/decide`` routes. This package imports
no other adapter.
"""

from __future__ import annotations

import logging

from adapters.email.channel import EmailChannel, Smtp
from adapters.email.pages import EmailPages
from adapters.runtime import Mounted, Wiring
from bot.errors import ConfigError

log = logging.getLogger(__name__)


def mount(wiring: Wiring) -> Mounted[EmailChannel]:
    """Email's channel and pages. Raises ``ConfigError`` when the settings cannot work."""
    settings = wiring.settings.email
    if settings.smtp_url is None:
        raise ConfigError("email.smtp_url is not set, so the email channel cannot start")
    smtp = Smtp(settings.smtp_url.reveal(), settings.timeout.total_seconds())
    channel = EmailChannel(
        wiring.gate,
        settings,
        wiring.settings.server.public_url,
        smtp,
        on_undeliverable=wiring.undeliverable,
    )
    log.info("email channel on (SMTP %s:%s)", smtp.hostname, smtp.port)
    return Mounted(channel, channel=channel, routes=tuple(EmailPages(wiring.gate).routes()))


__all__ = ["EmailChannel", "mount"]
