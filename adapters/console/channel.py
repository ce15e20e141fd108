"""``ConsoleChannel``: the console as an ``ApprovalChannel`` (``Platform.CONSOLE``).

The console renders every page from the store, so a new card, a vote, a decision, an
escalation or a reminder needs nothing posted anywhere: the next page load shows it. What
``deliver`` does is wake open inbox pages in this process: it bumps a change counter that
the inbox's small script long-polls (``/console/inbox/changes``), so a pending request shows
up (and a decided one disappears) without a manual reload. ``PAGE`` notices concern the
escalation channel and the pager, not the inbox, and are ignored. Pages served by another
process sharing the database see changes on their long-poll's timeout (a reload every 25 s
at most) or on the next load.
"""

from __future__ import annotations

import asyncio
import contextlib

from bot.domain import Platform
from bot.ports import Notice, NoticeKind


class ConsoleChannel:
    platform = Platform.CONSOLE

    def __init__(self) -> None:
        self.version = 0
        self._changed = asyncio.Event()

    async def deliver(self, notice: Notice) -> None:
        if notice.kind is NoticeKind.PAGE:
            return
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_change(self, seen: int, limit: float) -> int:
        """Return the change counter once it differs from ``seen`` (or after ``limit`` s)."""
        if self.version != seen:
            return self.version
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), limit)
        return self.version
