"""The published checkpoint (SPEC §4 ``log.publish_file``, §7 "Rollback and forks").

Owns the file outside the database where the newest checkpoint the server signed is kept,
and the rule that makes it useful: the store's log must extend it. A restored backup of the
database (a smaller tree) or rewritten rows (a tree of the same or larger size with another
history) cannot produce a consistency proof from the published checkpoint to the current
tree, and ``RollbackDetected`` stops the server instead of signing over the evidence.

The file is read and replaced under an exclusive ``flock`` on ``<file>.lock``, so processes
sharing one store (``serve --workers``) check and publish one at a time and the file only
ever moves forward. This module does file I/O only; the Merkle proofs come from the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple

from bot.errors import EvidenceError
from bot.evidence.checkpoint import parse_checkpoint, verify_checkpoint
from bot.evidence.keys import PublicKeys


class RollbackDetected(EvidenceError):
    """The store's log does not extend the checkpoint published earlier: the server stops."""

    slug = "log-rollback"
    status = 503


class Published(NamedTuple):
    size: int
    root: bytes
    note: str


class PublishedFile:
    """``path``: the published checkpoint; verified against ``keys`` under ``origin``."""

    def __init__(self, path: Path, keys: PublicKeys, origin: str) -> None:
        self.path = path
        self.keys = keys
        self.origin = origin
        self._lock_path = path.with_name(path.name + ".lock")
        # the last note this process verified or wrote: the file read back with exactly
        # that text needs no second signature check (any other text is verified in full)
        self._trusted: Published | None = None

    @contextlib.asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        """Hold the exclusive lock across awaits (another process waits; so does a thread)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def read(self) -> Published | None:
        """The published checkpoint, or None when nothing was published yet.

        Raises ``RollbackDetected`` when the file exists but is not a checkpoint of this log
        signed by one of our keys (a replaced or damaged file is not silently trusted)."""
        try:
            note = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise RollbackDetected(
                f"cannot read the published checkpoint {self.path}: {exc}"
            ) from None
        trusted = self._trusted
        if trusted is not None and note == trusted.note:
            return trusted
        try:
            size, root = verify_checkpoint(note, self.keys, self.origin)
        except EvidenceError as exc:
            raise RollbackDetected(
                f"the published checkpoint {self.path} does not verify ({exc.message}); "
                "refusing to sign over it"
            ) from None
        self._trusted = Published(size, root, note)
        return self._trusted

    def write(self, note: str) -> None:
        """Replace the file atomically (call under ``locked``). Raises ``OSError``."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(note, encoding="utf-8")
        os.replace(tmp, self.path)
        parsed = parse_checkpoint(note)  # our own signature: no need to verify it again
        self._trusted = Published(parsed.size, parsed.root, note)

    def refuse(self, published: Published, size: int, why: str) -> RollbackDetected:
        """The one-line error for a store whose tree of ``size`` does not extend it."""
        return RollbackDetected(
            f"log rollback or fork detected: the store's log (size {size}) does not extend the "
            f"checkpoint published at {self.path} (size {published.size}): {why}; was the "
            "database restored from a backup or rewritten? signoff stops rather than sign a "
            "different history"
        )


__all__ = ["Published", "PublishedFile", "RollbackDetected"]
