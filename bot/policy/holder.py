"""The policy in force, and its hot reload (SPEC §5).

``PolicyHolder(paths)`` loads at construction and raises ``PolicyError`` when that first load
fails (the server refuses to start). Later, a policy that fails to load keeps the previous one
in force; the failure is logged at WARNING with its diagnostics, kept in ``last_error`` and
reported to ``on_failure`` (the metric). ``watch`` polls the files' names, sizes and
modification times (no extra dependency).

With ``verify`` (the composition root passes the signed-bundle check of ``policy.trusted_keys``)
a policy is in force only once ``verify(policy)`` returns the key id that signed it; a
``SignoffError`` from it is a failed load like any other: refused at start, the previous
policy kept on reload.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from bot.errors import SignoffError
from bot.policy.loader import load_policy
from bot.policy.model import Policy

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]


class PolicyHolder:
    """Holds the current ``Policy``; readers call ``holder.current`` on every evaluation."""

    def __init__(
        self,
        paths: Sequence[Path | str],
        *,
        on_change: Callable[[Policy], None] | None = None,
        verify: Callable[[Policy], str] | None = None,
        on_failure: Callable[[SignoffError], None] | None = None,
        also_watch: Sequence[Path] = (),
    ) -> None:
        """Loads the policy now; raises ``PolicyError`` if it does not load, or the error of
        ``verify`` if its signature does not verify."""
        self.paths = tuple(Path(path) for path in paths)
        self._watched = (*self.paths, *also_watch)  # e.g. the bundle's signature file
        self.on_change = on_change
        self.verify = verify
        self.on_failure = on_failure
        self.last_error: SignoffError | None = None
        self._fingerprint = fingerprint(self._watched)
        self._policy = self._load()
        log.info(
            "policy loaded: %s (version %s, %d rules%s)",
            self._policy.digest,
            self._policy.version,
            len(self._policy.rules),
            f", signed by {self._policy.signer}" if self._policy.signer else "",
        )

    def _load(self) -> Policy:
        policy = load_policy(self.paths)
        if self.verify is None:
            return policy
        return replace(policy, signer=self.verify(policy))

    @property
    def current(self) -> Policy:
        return self._policy

    def reload(self) -> bool:
        """Load the files again. True when a policy with a new digest is now in force;
        False when the content is unchanged or the new policy failed (the old one stays)."""
        self._fingerprint = fingerprint(self._watched)
        try:
            fresh = self._load()
        except SignoffError as exc:
            self.last_error = exc
            log.warning(
                "policy reload failed, keeping %s: %s", self._policy.digest, exc.diagnostics()
            )
            for detail in exc.details:
                log.warning("policy problem: %s", detail)
            if self.on_failure is not None:
                self.on_failure(exc)
            return False
        self.last_error = None
        if fresh.digest == self._policy.digest and fresh.signer == self._policy.signer:
            return False
        old, self._policy = self._policy, fresh
        log.info("policy reloaded: %s -> %s (version %s)", old.digest, fresh.digest, fresh.version)
        if self.on_change is not None:
            self.on_change(fresh)
        return True

    def poll(self) -> bool:
        """Reload if any policy file was added, removed or changed since the last look."""
        if fingerprint(self._watched) == self._fingerprint:
            return False
        return self.reload()

    async def watch(self, interval: float = 1.0) -> None:
        """Poll every ``interval`` seconds until cancelled (file I/O runs in a thread)."""
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.poll)


def fingerprint(paths: Sequence[Path]) -> Fingerprint:
    """``(path, size, mtime_ns)`` of every policy file under ``paths`` (missing ones too)."""
    seen: list[tuple[str, int, int]] = []
    for path in paths:
        if path.is_dir():
            for root, _dirs, files in os.walk(path):
                for name in files:
                    if name.endswith((".yaml", ".yml")):
                        seen.append(_stat(Path(root) / name))
        else:
            seen.append(_stat(path))
    return tuple(sorted(seen))


def _stat(path: Path) -> tuple[str, int, int]:
    try:
        info = path.stat()
    except OSError:
        return (str(path), -1, -1)
    return (str(path), info.st_size, info.st_mtime_ns)
