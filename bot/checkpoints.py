"""Signed checkpoints of the Merkle log: issued after appends (batched) and on demand,
optionally published to a file outside the database so that a copy exists the operator's
database cannot rewrite."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from bot.domain import Checkpoint
from bot.evidence.checkpoint import sign_checkpoint
from bot.evidence.keys import KeyRing
from bot.ports import Clock, Store

log = logging.getLogger(__name__)


class Checkpointer:
    """Issues a checkpoint whenever the log has grown since the last one."""

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
        self._lock = asyncio.Lock()

    async def current(self) -> Checkpoint:
        """A checkpoint covering the whole log as it is now (issued if the last is stale)."""
        async with self._lock:
            size = await self.store.log_size()
            latest = await self.store.latest_checkpoint()
            if latest is not None and latest.size >= size:
                return latest
            root = await self.store.log_root(size)
            note = sign_checkpoint(self.origin, size, root, self.keys)
            checkpoint = Checkpoint(size, root, note, self.clock.now())
            await self.store.add_checkpoint(checkpoint)
            if self.publish_file is not None:
                self._publish(note)
            return checkpoint

    def _publish(self, note: str) -> None:
        if self.publish_file is None:
            return
        try:
            self.publish_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.publish_file.with_suffix(".tmp")
            tmp.write_text(note, encoding="utf-8")
            os.replace(tmp, self.publish_file)
        except OSError:
            log.exception("could not publish the checkpoint to %s", self.publish_file)

    async def run(self, interval: float) -> None:
        """Issue checkpoints every ``interval`` seconds while the log grows."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.current()
            except Exception:
                log.exception("checkpoint failed")
