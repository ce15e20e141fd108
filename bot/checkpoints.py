"""Signed checkpoints of the Merkle log: issued after appends (batched) and on demand,
optionally published to a file outside the database so that a copy exists the operator's
database cannot rewrite, and never signed over a history that does not extend that copy
(``bot.published``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from bot.domain import Checkpoint
from bot.errors import EvidenceError
from bot.evidence.checkpoint import sign_checkpoint
from bot.evidence.keys import KeyRing
from bot.evidence.merkle import verify_consistency
from bot.ports import Clock, Store
from bot.published import Published, PublishedFile, RollbackDetected

log = logging.getLogger(__name__)


class Checkpointer:
    """Issues a checkpoint whenever the log has grown since the last one, and (with a
    published file) refuses to sign one that does not extend what it published before.

    ``on_fatal`` is called with the ``RollbackDetected`` error the first time the store is
    found not to extend the published checkpoint (the runtime stops the server);
    ``on_checkpoint`` listeners get each new checkpoint (witness cosigning)."""

    def __init__(
        self,
        store: Store,
        keys: KeyRing,
        clock: Clock,
        *,
        origin: str,
        publish_file: Path | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.clock = clock
        self.origin = origin
        self.publish_file = publish_file
        self.published = PublishedFile(publish_file, keys, origin) if publish_file else None
        self.on_fatal: Callable[[RollbackDetected], None] | None = None
        self.on_checkpoint: list[Callable[[Checkpoint], None]] = []
        self.failed: RollbackDetected | None = None
        self._lock = asyncio.Lock()
        self._covered = -1  # the size of the newest checkpoint current() returned

    async def current(self) -> Checkpoint:
        """A checkpoint covering the whole log as it is now (issued if the last is stale).
        Raises ``RollbackDetected`` (and stops the server) when the log does not extend the
        published checkpoint."""
        async with self._lock:
            if self.failed is not None:
                raise self.failed
            size = await self.store.log_size()
            latest = await self.store.latest_checkpoint()
            if latest is not None and latest.size >= size:
                self._covered = latest.size
                return latest
            if self.published is None:
                checkpoint = await self._sign(size)
            else:
                async with self.published.locked():
                    # Read the file before the store: both only grow, so a concurrent
                    # publisher can never make a healthy store look rolled back.
                    published = self.published.read()
                    # sign the tree just proved consistent (its root is computed once)
                    checkpoint = await self._sign(*await self._check(self.published, published))
                    if published is None or checkpoint.size > published.size:
                        self._write(self.published, checkpoint.note)
            self._covered = checkpoint.size
            for listener in self.on_checkpoint:
                listener(checkpoint)
            return checkpoint

    async def recent(self, limit: int) -> list[Checkpoint]:
        """The newest ``limit`` stored checkpoints, newest first, with the cosignatures the
        witnesses added. Raises ``StoreError``."""
        return await self.store.recent_checkpoints(limit)

    async def log_size(self) -> int:
        """How many entries the log holds now (a checkpoint may cover fewer). Raises
        ``StoreError``."""
        return await self.store.log_size()

    async def verify_published(self) -> None:
        """At start: raises ``RollbackDetected`` unless the store extends the published
        checkpoint (nothing to check without ``publish_file``)."""
        if self.published is None:
            return
        async with self._lock, self.published.locked():
            await self._check(self.published, self.published.read())

    async def _sign(self, size: int, root: bytes | None = None) -> Checkpoint:
        if root is None:
            root = await self.store.log_root(size)
        note = sign_checkpoint(self.origin, size, root, self.keys)
        checkpoint = Checkpoint(size, root, note, self.clock.now())
        await self.store.add_checkpoint(checkpoint)
        return checkpoint

    async def _check(self, file: PublishedFile, published: Published | None) -> tuple[int, bytes]:
        """The store's current tree ``(size, root)``, proved consistent with ``published``
        (RFC 9162 §2.1.4) when there is one."""
        try:
            size = await self.store.log_size()
            if published is not None and size < published.size:
                raise file.refuse(published, size, "the tree is smaller")
            root = await self.store.log_root(size)
            if published is not None:
                proof = await self.store.consistency_proof(published.size, size)
                try:
                    verify_consistency(published.size, size, published.root, root, proof)
                except EvidenceError as exc:
                    raise file.refuse(published, size, exc.message) from None
            return size, root
        except RollbackDetected as exc:
            self._fail(exc)
            raise

    def _fail(self, exc: RollbackDetected) -> None:
        if self.failed is None:
            self.failed = exc
            log.critical("%s", exc.message)
            if self.on_fatal is not None:
                self.on_fatal(exc)

    def _write(self, file: PublishedFile, note: str) -> None:
        try:
            file.write(note)
        except OSError:
            log.exception("could not publish the checkpoint to %s", self.publish_file)

    async def run(self, interval: float) -> None:
        """Issue checkpoints every ``interval`` seconds while the log grows."""
        while True:
            await asyncio.sleep(interval)
            try:
                # an idle log: the checkpoint returned last still covers it (nothing to
                # sign, publish or prove; the published file is checked before a publish)
                if self.failed is None and await self.store.log_size() == self._covered:
                    continue
                await self.current()
            except RollbackDetected:
                return  # on_fatal already told the runtime
            except Exception:
                log.exception("checkpoint failed")
