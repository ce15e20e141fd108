"""``RecordingChannel``: an ``ApprovalChannel`` that remembers every notice it is given."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.domain import Platform
from bot.ports import Notice, NoticeKind


@dataclass
class RecordingChannel:
    """An ``ApprovalChannel`` that remembers every notice."""

    platform: Platform = Platform.CONSOLE
    notices: list[Notice] = field(default_factory=list)

    async def deliver(self, notice: Notice) -> None:
        self.notices.append(notice)

    def kinds(self) -> list[NoticeKind]:
        """The kinds of the notices after the request's creation, in order."""
        return [n.kind for n in self.notices if n.kind is not NoticeKind.CREATED]
