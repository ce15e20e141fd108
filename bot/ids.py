"""Identifiers: agent bearer tokens (and the hash that is all the store keeps), the short-lived
cache of successful token lookups, and request ids."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import time

from bot.domain import Agent

#: how long a successful token lookup is reused (see ``Gate.authenticate``)
AUTH_CACHE_TTL = 1.0
_AUTH_CACHE_MAX = 10_000


def token_hash(token: str) -> str:
    """SHA-256 hex of an agent bearer token (only the hash is ever stored)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class RequestIds:
    """Request ids: UUID version 7 strings (RFC 9562 §5.7): 48 bits of Unix milliseconds,
    then 74 random bits. Time-ordered ids land at the right edge of every index keyed by
    them (the requests table, the log's request index) instead of on a random page each,
    which keeps a commit's dirty pages few. The randomness is drawn from the OS 4 KiB at a
    time instead of one system call per id; a forked child draws afresh."""

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0
        self._pid = -1

    def __call__(self) -> str:
        if self._at + 10 > len(self._pool) or self._pid != os.getpid():
            self._pool, self._at, self._pid = os.urandom(4096), 0, os.getpid()
        raw = bytearray((time.time_ns() // 1_000_000 % (1 << 48)).to_bytes(6, "big"))
        raw += self._pool[self._at : self._at + 10]
        self._at += 10
        raw[6] = (raw[6] & 0x0F) | 0x70  # version 7
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 9562 variant
        h = raw.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


request_ids = RequestIds()


def new_token() -> str:
    """A fresh 256-bit agent token."""
    return "so_" + secrets.token_urlsafe(32)


class AuthCache:
    """Token hash -> agent for live, unsuspended agents, each kept ``ttl`` seconds.

    ``epoch`` changes on every ``forget``: a lookup that started before a suspend/resume must
    not put a row read before it back (``put`` ignores a stale epoch).

    ``lookups`` holds the store read under way for a token hash (``Agents.authenticate``):
    when an entry expires under load, the requests that find it gone share one read instead
    of each sending their own.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.epoch = 0
        self._entries: dict[str, tuple[float, Agent]] = {}
        self.lookups: dict[str, asyncio.Future[Agent | None]] = {}

    def get(self, digest: str) -> Agent | None:
        hit = self._entries.get(digest)
        if hit is None or hit[0] <= time.monotonic():
            return None
        return hit[1]

    def put(self, digest: str, agent: Agent, epoch: int) -> None:
        if self.ttl <= 0 or epoch != self.epoch:
            return
        if len(self._entries) >= _AUTH_CACHE_MAX:
            self._entries.clear()
        self._entries[digest] = (time.monotonic() + self.ttl, agent)

    def forget(self, agent_id: str) -> None:
        self.epoch += 1
        for digest in [d for d, (_, a) in self._entries.items() if a.id == agent_id]:
            del self._entries[digest]
