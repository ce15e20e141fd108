"""``EmailChannel``: approval messages for groups with an ``email`` route (SPEC §8 Email).

A confirm request, a group added by escalation and a reminder each send one message per member
of the group who has an ``email`` in ``people:`` (the requester included: the gate refuses
their vote, and they still learn the call is waiting). Messages go out with ``aiosmtplib``
to ``email.smtp_url``; an SMTP failure raises ``ChannelError`` (the gate logs it; a request
without a decision still ends in deny, never in allow). A group none of whose members could be
sent its approval message is reported to ``on_undeliverable`` (escalation may act sooner).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import unquote, urlsplit

import aiosmtplib

from adapters.email.links import Link, make_link
from adapters.email.message import Links, approval_message
from bot.approvals import current_approvals
from bot.domain import Platform, Request, Verdict
from bot.errors import ChannelError, ConfigError
from bot.ports import Notice, NoticeKind, Undeliverable
from bot.service import Gate
from bot.settings import EmailSettings

log = logging.getLogger(__name__)

#: links of a request without a deadline (cannot happen for confirm) stop working after this
NO_DEADLINE = timedelta(days=1)
PATH = "/email/decide"


class Smtp:
    """Where messages go: parsed once from ``email.smtp_url``. Raises ``ConfigError``."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        schemes = {"smtp": (25, False, False), "smtps": (465, True, False)}
        schemes["smtp+starttls"] = (587, False, True)
        if parts.scheme not in schemes or not parts.hostname:
            raise ConfigError(
                "email.smtp_url must look like smtp://host:port, smtps://… or smtp+starttls://…"
            )
        port, tls, starttls = schemes[parts.scheme]
        self.hostname = parts.hostname
        self.port = parts.port or port
        self.use_tls = tls
        self.start_tls = starttls
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout

    async def send(self, message: object) -> None:
        """Hand ``message`` to the server. Raises ``ChannelError``."""
        try:
            await aiosmtplib.send(
                message,  # type: ignore[arg-type]
                hostname=self.hostname,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.use_tls,
                start_tls=self.start_tls,
                timeout=self.timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise ChannelError(f"SMTP server {self.hostname}:{self.port}: {exc}") from exc


class EmailChannel:
    """Sends approval messages with signed one-time links."""

    platform = Platform.EMAIL

    def __init__(
        self,
        gate: Gate,
        settings: EmailSettings,
        public_url: str,
        smtp: Smtp,
        *,
        on_undeliverable: Undeliverable | None = None,
    ) -> None:
        self.gate = gate
        self.sender = settings.from_
        self.public_url = public_url.rstrip("/")
        self.smtp = smtp
        self.on_undeliverable = on_undeliverable

    async def deliver(self, notice: Notice) -> None:
        request = notice.request
        if notice.kind not in (NoticeKind.CREATED, NoticeKind.ESCALATED, NoticeKind.REMINDER):
            return
        if notice.kind is NoticeKind.CREATED and request.status.final:
            return  # notify tier: already allowed; email carries decisions only
        received = len({v.approver.key for v in current_approvals(request, notice.votes)})
        failures = []
        failed: set[str] = set()
        for address, person in self.recipients(request, notice.groups):
            message = approval_message(
                request,
                to=address,
                sender=self.sender,
                links=self.links(request, person, address),
                received=received,
                reminder=notice.kind is NoticeKind.REMINDER,
            )
            try:
                await self.smtp.send(message)
            except ChannelError as exc:
                failures.append(exc.message)
                failed.add(address)
        if failures:
            error = ChannelError(f"email for request {request.id}: {'; '.join(failures)}")
            if notice.kind is not NoticeKind.REMINDER:
                await self._undeliverable(request, notice.groups, failed, error)
            raise error

    async def _undeliverable(
        self, request: Request, groups: tuple[str, ...], failed: set[str], error: ChannelError
    ) -> None:
        """Report each group none of whose members' messages went out."""
        if self.on_undeliverable is None:
            return
        for group in groups or request.approver_groups:
            addresses = {a for a, _ in self.recipients(request, (group,))}
            if addresses and addresses <= failed:
                try:
                    await self.on_undeliverable(request, group, error)
                except Exception:
                    log.exception("on_undeliverable hook failed for request %s", request.id)

    def recipients(self, request: Request, groups: tuple[str, ...]) -> list[tuple[str, str]]:
        """(address, person key) of the members of ``groups`` with an email route."""
        policy = self.gate.policy
        found: dict[str, str] = {}
        for name in groups or request.approver_groups:
            spec = policy.groups.get(name)
            if spec is None or spec.email is None:
                continue
            for key in spec.members:
                person = policy.people.get(key)
                if person is not None and person.email:
                    found.setdefault(person.email.casefold(), key)
        return [(address, key) for address, key in found.items()]

    def links(self, request: Request, person: str, address: str) -> Links:
        console = f"{self.public_url}/console/requests/{request.id}"
        if request.step_up is not None:
            return Links(None, None, console)  # SPEC §5: only the security key approves
        deadline = request.deadline or (request.created_at + NO_DEADLINE)

        def link(verdict: Verdict) -> str:
            token = make_link(
                Link(
                    request.id,
                    person,
                    address,
                    verdict,
                    request.current_sha256,
                    int(deadline.timestamp()),
                ),
                self.gate.signer,
            )
            return f"{self.public_url}{PATH}?t={token}"

        return Links(link(Verdict.APPROVE), link(Verdict.DENY), console)
