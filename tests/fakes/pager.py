"""``FakePager``: a ``Pager`` that records what it was asked to page, or fails like a
PagerDuty call that ran out of retries."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.domain import Request
from bot.errors import ChannelError


@dataclass
class FakePager:
    """A ``Pager`` that records triggers and resolves, or fails like an exhausted retry."""

    fail: bool = False
    triggered: list[tuple[str, str]] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)

    async def trigger(self, request: Request, summary: str) -> None:
        if self.fail:
            raise ChannelError("PagerDuty trigger failed: HTTP 503")
        self.triggered.append((request.id, summary))

    async def resolve(self, request: Request) -> None:
        self.resolved.append(request.id)
