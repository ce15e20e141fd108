"""A real store wrapped to count the reads of one request (``get_request`` and
``request_view``); everything else goes straight to the store inside."""

from __future__ import annotations

from typing import Any

from bot.domain import Post, Request, Vote
from bot.store import SqlStore


class CountingStore:
    """``reads``: how many times a request was read, alone or with its votes."""

    def __init__(self, inner: SqlStore) -> None:
        self.inner = inner
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get_request(self, request_id: str) -> Request | None:
        self.reads += 1
        return await self.inner.get_request(request_id)

    async def request_view(
        self, request_id: str, *args: Any, **kwargs: Any
    ) -> tuple[Request | None, list[Vote], list[Post]]:
        self.reads += 1
        return await self.inner.request_view(request_id, *args, **kwargs)
