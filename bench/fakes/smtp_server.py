"""A real SMTP server for the tests (``aiosmtpd``) on an ephemeral loopback port, keeping
every delivered message, so the email channel is tested over SMTP as deployed."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Inbox:
    """What the server accepted, in order; ``event`` is set on each delivery."""

    messages: list[EmailMessage] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None
    event: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        if self.loop is not None:
            self.arrivals.append(self.loop.time())
            self.loop.call_soon_threadsafe(self.event.set)
        return "250 Message accepted for delivery"

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        async with asyncio.timeout(timeout):
            while len(self.messages) < count:
                self.event.clear()
                if len(self.messages) >= count:
                    break
                await self.event.wait()
        return self.messages


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SmtpServer:
    """``aiosmtpd``'s threaded controller around an ``Inbox``."""

    def __init__(self) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.inbox.loop = asyncio.get_running_loop()
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())
