"""Witness cosigning beside the log (SPEC §4 ``log.witnesses``, §7 "Witnesses").

Each new checkpoint (``Checkpointer.on_checkpoint``) is handed to ``Cosigner.notify``, which
only records it and wakes one background task: nothing on the request path waits for a
witness. The task sends the newest checkpoint to every witness at once per the C2SP
tlog-witness protocol (``POST <url>/add-checkpoint`` with ``old <size>`` and an RFC 6962
consistency proof from the size that witness last cosigned), checks each answer as a C2SP
tlog-cosignature by that witness's configured key, and stores the note with the verified
cosignature lines added (``Store.set_checkpoint_note``): ``GET /v1/log/checkpoint`` serves it.

A witness that is down, slow (``log.witness_timeout``) or answers garbage is logged and
skipped for this checkpoint, and retried with the next one (or after ``retry`` seconds); a
409 teaches the size it last cosigned; a witness that claims a size this log does not extend
is reported loudly (either it or this log was rolled back). Fewer than ``witness_quorum``
cosignatures leave the checkpoint unwitnessed, which ``audit verify --witness`` reports.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from bot.domain import Checkpoint
from bot.errors import ConfigError, EvidenceError
from bot.evidence.cosignature import (
    VerifierKey,
    add_signatures,
    parse_verifier_key,
    verify_cosignatures,
)
from bot.ports import Store
from bot.settings import WitnessSettings

log = logging.getLogger(__name__)

SIZE_TYPE = "text/x.tlog.size"
_MAX_ANSWER = 16 * 1024


@dataclass
class Witness:
    name: str
    url: str
    key: VerifierKey
    size: int = 0  # the size this witness last cosigned (as far as we know)

    @classmethod
    def from_settings(cls, settings: WitnessSettings) -> Witness:
        """Raises ``ConfigError`` for a missing URL or a key that is not a witness vkey."""
        try:
            key = parse_verifier_key(settings.key)
        except EvidenceError as exc:
            raise ConfigError(f"log.witnesses: {exc.message}") from exc
        name = settings.name or key.name
        if key.name != name:
            raise ConfigError(f"log.witnesses: {name}: the key is named {key.name}")
        if not settings.url.startswith(("https://", "http://")):
            raise ConfigError(f"log.witnesses: {name}: url must be an http(s) URL")
        return cls(name, settings.url.rstrip("/"), key)


class Cosigner:
    """Gathers cosignatures for the newest checkpoint, one round at a time."""

    def __init__(
        self,
        store: Store,
        witnesses: Sequence[Witness],
        *,
        quorum: int,
        timeout: float = 5.0,
        retry: float = 5.0,
    ) -> None:
        if not 1 <= quorum <= len(witnesses):
            raise ConfigError(
                f"log.witness_quorum must be between 1 and the number of witnesses "
                f"({len(witnesses)}), not {quorum}"
            )
        self.store = store
        self.witnesses = list(witnesses)
        self.quorum = quorum
        self.timeout = timeout
        self.retry = retry
        self._latest: Checkpoint | None = None
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        #: the newest checkpoint that reached the quorum (size), for tests and metrics
        self.witnessed_size = -1

    def notify(self, checkpoint: Checkpoint) -> None:
        """``Checkpointer.on_checkpoint``: remember the newest checkpoint; never blocks."""
        if self._latest is None or checkpoint.size >= self._latest.size:
            self._latest = checkpoint
            self._wake.set()

    async def run(self) -> None:
        """The background task: cosign the newest checkpoint whenever there is a new one."""
        done: tuple[int, bytes] | None = None
        latest = await self.store.latest_checkpoint()
        if latest is not None:
            self.notify(latest)  # the newest checkpoint of the previous run, too
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.retry)
                self._wake.clear()
                checkpoint = self._latest
                if checkpoint is None or done == (checkpoint.size, checkpoint.root):
                    continue
                if await self.cosign(checkpoint) >= self.quorum:
                    done = (checkpoint.size, checkpoint.root)
        finally:
            await self.close()

    async def finish(self) -> None:
        """At shutdown: one last round for the final checkpoint (each witness still bounded
        by the timeout), so a stopped server's log ends witnessed when the witnesses are up."""
        try:
            if self._latest is not None and self._latest.size > self.witnessed_size:
                await self.cosign(self._latest)
        finally:
            await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def cosign(self, checkpoint: Checkpoint) -> int:
        """One round: ask every witness, store what verified; returns how many cosigned."""
        answers = await asyncio.gather(*(self._ask(w, checkpoint) for w in self.witnesses))
        lines = [line for line in answers if line is not None]
        if lines:
            note = add_signatures(checkpoint.note, lines)
            await self.store.set_checkpoint_note(checkpoint.size, checkpoint.root, note)
        if len(lines) >= self.quorum:
            self.witnessed_size = max(self.witnessed_size, checkpoint.size)
        else:
            log.warning(
                "checkpoint %d has %d of %d witness cosignatures needed; retrying",
                checkpoint.size,
                len(lines),
                self.quorum,
            )
        return len(lines)

    async def _ask(self, witness: Witness, checkpoint: Checkpoint) -> str | None:
        """The witness's verified cosignature line, or None (logged)."""
        try:
            return await asyncio.wait_for(self._exchange(witness, checkpoint), self.timeout)
        except TimeoutError:
            log.warning("witness %s did not answer within %.1fs", witness.name, self.timeout)
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("witness %s unreachable: %s", witness.name, type(exc).__name__)
        except EvidenceError as exc:
            log.warning("witness %s: %s", witness.name, exc.message)
        return None

    async def _exchange(self, witness: Witness, checkpoint: Checkpoint) -> str:
        for _ in range(2):  # a 409 teaches the witness's size: then one more try
            if witness.size > checkpoint.size:
                raise EvidenceError(
                    f"witness has cosigned size {witness.size}, more than this log's "
                    f"{checkpoint.size}: this log or the witness was rolled back"
                )
            proof = (
                await self.store.consistency_proof(witness.size, checkpoint.size)
                if 0 < witness.size < checkpoint.size
                else []
            )
            body = f"old {witness.size}\n" + "".join(
                base64.b64encode(h).decode() + "\n" for h in proof
            )
            body += "\n" + checkpoint.note
            async with self._http().post(
                witness.url + "/add-checkpoint", data=body.encode(), allow_redirects=False
            ) as resp:
                text = (await resp.content.read(_MAX_ANSWER)).decode("utf-8", "replace")
                if resp.status == 409 and resp.content_type == SIZE_TYPE:
                    size = text.strip()
                    if not size.isdigit():
                        raise EvidenceError("409 without a tree size")
                    if int(size) == witness.size:
                        raise EvidenceError(
                            f"refused checkpoint {checkpoint.size}: it does not extend the "
                            f"checkpoint of size {size} the witness cosigned (fork?)"
                        )
                    witness.size = int(size)
                    continue
                if resp.status != 200:
                    raise EvidenceError(f"answered HTTP {resp.status}: {text.strip()[:200]}")
            mine = [line for line in text.split("\n") if line.split(" ")[1:2] == [witness.name]]
            for line in mine:
                try:
                    verify_cosignatures(add_signatures(checkpoint.note, [line]), [witness.key])
                except EvidenceError:
                    continue
                witness.size = checkpoint.size
                return line
            raise EvidenceError(f"answered no valid cosignature ({text.strip()[:80]!r})")
        raise EvidenceError("kept answering 409")

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(trust_env=False)
        return self._session


__all__ = ["Cosigner", "Witness"]
