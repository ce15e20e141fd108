"""The email channel (SPEC §4, §8): approval messages with signed one-time links, and the
page those links open. On when ``email.smtp_url`` is set.

``mount`` adds the ``EmailChannel`` to the gate and the ``/email/decide`` routes to the app.
This package imports no other adapter.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from adapters.email.channel import EmailChannel, Smtp
from adapters.email.pages import EmailPages
from bot.errors import ConfigError

if TYPE_CHECKING:
    from adapters.main import Runtime

log = logging.getLogger(__name__)


def mount(runtime: Runtime) -> EmailChannel:
    """Wire email into ``runtime``. Raises ``ConfigError`` when the settings cannot work."""
    settings = runtime.settings.email
    if settings.smtp_url is None:
        raise ConfigError("email.smtp_url is not set, so the email channel cannot start")
    smtp = Smtp(settings.smtp_url.reveal(), settings.timeout.total_seconds())
    channel = EmailChannel(runtime.gate, settings, runtime.settings.server.public_url, smtp)
    runtime.gate.channels.append(channel)
    runtime.app.add_routes(EmailPages(runtime.gate).routes())
    log.info("email channel on (SMTP %s:%s)", smtp.hostname, smtp.port)
    return channel


__all__ = ["EmailChannel", "mount"]
