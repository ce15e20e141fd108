"""The witness: configuration, persistent state and the ``add-checkpoint`` endpoint
(c2sp.org/tlog-witness).

State is one JSON file (``{"origins": {origin: {"size": N, "root": base64}}}``) replaced
atomically (temp file, fsync, rename) under an ``flock`` and an in-process lock: checking
the old size against the stored checkpoint and persisting the new one happen as one step, as
the protocol requires (two concurrent requests can never roll the record back).

Answers, per the protocol: 200 with cosignature lines; 400 malformed body or old size
greater than the checkpoint's; 403 no signature by a trusted log key; 404 unknown origin;
409 old size is not the size last cosigned (body: that size and a newline, Content-Type
``text/x.tlog.size``) or same size with another root; 422 the consistency proof does not
verify. A log that was rolled back (smaller tree) or forked never gets a cosignature.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing
import yaml
from aiohttp import web

from bot.errors import ConfigError, EvidenceError
from bot.evidence.cosignature import (
    ED25519_NOTE,
    VerifierKey,
    cosign,
    parse_verifier_key,
    verifier_key,
)
from bot.evidence.merkle import verify_consistency

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
MAX_PROOF_LINES = 63
SIZE_TYPE = "text/x.tlog.size"
_DASH = "\u2014"


@dataclass(frozen=True)
class WitnessConfig:
    name: str
    host: str
    port: int
    key_file: Path
    state_file: Path
    logs: dict[str, tuple[VerifierKey, ...]]  # origin -> trusted log keys (type 0x01)


def load_config(path: Path) -> WitnessConfig:
    """Read ``witness.yaml``. Raises ``ConfigError`` with the file and what is wrong."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the witness configuration ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping")
    unknown = set(data) - {"name", "listen", "key_file", "state_file", "logs"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    base = path.parent
    try:
        listen = data.get("listen") or {}
        logs: dict[str, tuple[VerifierKey, ...]] = {}
        for entry in data.get("logs") or []:
            origin = str(entry["origin"])
            keys = tuple(parse_verifier_key(str(k), ED25519_NOTE) for k in entry["keys"])
            if any(k.name != origin for k in keys):
                raise ConfigError(f"{path}: log {origin}: every key must be named {origin}")
            logs[origin] = keys
        return WitnessConfig(
            name=str(data["name"]),
            host=str(listen.get("host", "127.0.0.1")),
            port=int(listen.get("port", 8090)),
            key_file=base / str(data.get("key_file", "witness.key")),
            state_file=base / str(data.get("state_file", "state.json")),
            logs=logs,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: invalid witness configuration ({exc})") from exc
    except EvidenceError as exc:
        raise ConfigError(f"{path}: {exc.message}") from exc


def load_key(path: Path) -> nacl.signing.SigningKey:
    """The witness's private key (hex seed, 0600). Raises ``ConfigError``."""
    try:
        seed = bytes.fromhex(path.read_text(encoding="ascii").strip())
        return nacl.signing.SigningKey(seed)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the witness key ({exc})") from exc


class State:
    """The latest cosigned (size, root) per origin, in ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    def read(self) -> dict[str, tuple[int, bytes]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return {
            origin: (int(v["size"]), base64.b64decode(v["root"]))
            for origin, v in data.get("origins", {}).items()
        }

    def _write(self, origins: dict[str, tuple[int, bytes]]) -> None:
        data = {
            "origins": {
                o: {"size": s, "root": base64.b64encode(r).decode()}
                for o, (s, r) in origins.items()
            }
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    async def update(
        self, origin: str, check: Callable[[tuple[int, bytes] | None], tuple[int, bytes]]
    ) -> None:
        """Atomically: ``check`` the stored record (raises to refuse) and store its result."""
        async with self._lock:
            with self._file_lock():
                origins = self.read()
                origins[origin] = check(origins.get(origin))
                self._write(origins)


class Refused(Exception):
    def __init__(self, status: int, text: str, content_type: str = "text/plain") -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.content_type = content_type


@dataclass(frozen=True)
class Submission:
    old: int
    proof: list[bytes]
    note: str
    origin: str
    size: int
    root: bytes
    body: str


def parse_submission(raw: bytes) -> Submission:
    """Split an add-checkpoint body. Raises ``Refused`` (400)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "body is not UTF-8\n") from None
    head, sep, note = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or not lines[0].startswith("old "):
        raise Refused(400, "expected an old size line, proof lines, an empty line, a checkpoint\n")
    size_text = lines[0][4:]
    if not size_text.isdigit() or size_text != str(int(size_text)):
        raise Refused(400, "old size is not a decimal number\n")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise Refused(400, "too many consistency proof lines\n")
    try:
        proof = [base64.b64decode(line, validate=True) for line in lines[1:]]
    except (ValueError, binascii.Error):
        raise Refused(400, "a consistency proof line is not base64\n") from None
    if any(len(h) != 32 for h in proof):
        raise Refused(400, "a consistency proof hash is not 32 bytes\n")
    body, sep, sigs = note.partition("\n\n")
    body_lines = body.split("\n")
    if not sep or len(body_lines) < 3 or not sigs.endswith("\n"):
        raise Refused(400, "the checkpoint is not a signed note\n")
    origin, size_line, root_line = body_lines[:3]
    try:
        size = int(size_line) if size_line.isdigit() else -1
        root = base64.b64decode(root_line, validate=True)
    except (ValueError, binascii.Error):
        raise Refused(400, "the checkpoint root is not base64\n") from None
    if size < 0 or len(root) != 32:
        raise Refused(400, "the checkpoint has no valid size and root\n")
    return Submission(int(size_text), proof, note, origin, size, root, body + "\n")


def check_log_signature(sub: Submission, keys: tuple[VerifierKey, ...]) -> None:
    """Raises ``Refused`` (403) unless a trusted log key signed the checkpoint."""
    by_id = {(k.name, k.key_id): k for k in keys}
    for line in sub.note.partition("\n\n")[2].rstrip("\n").split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _DASH:
            continue
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except (ValueError, binascii.Error):
            continue
        key = by_id.get((parts[1], blob[:4]))
        if key is None or len(blob) != 68:
            continue
        try:
            nacl.signing.VerifyKey(key.public).verify(sub.body.encode(), blob[4:])
            return
        except nacl.exceptions.BadSignatureError:
            continue
    raise Refused(403, "the checkpoint is not signed by a key this witness trusts\n")


class Witness:
    """The add-checkpoint logic over ``config``, ``key`` and ``state``."""

    def __init__(
        self,
        config: WitnessConfig,
        key: nacl.signing.SigningKey,
        state: State,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.key = key
        self.state = state
        self.clock = clock

    @property
    def vkey(self) -> str:
        return verifier_key(self.config.name, bytes(self.key.verify_key)).text()

    async def add_checkpoint(self, raw: bytes) -> str:
        """The cosignature lines for an add-checkpoint body. Raises ``Refused``."""
        sub = parse_submission(raw)
        keys = self.config.logs.get(sub.origin)
        if keys is None:
            raise Refused(404, "unknown log origin\n")
        check_log_signature(sub, keys)
        if sub.old > sub.size:
            raise Refused(400, "old size is larger than the checkpoint size\n")

        def check(stored: tuple[int, bytes] | None) -> tuple[int, bytes]:
            size, root = stored if stored is not None else (0, b"")
            if sub.old != size:
                raise Refused(409, f"{size}\n", SIZE_TYPE)
            if sub.old == sub.size:
                if stored is not None and root != sub.root:
                    log.warning("witness: %s forked at size %d (same size, other root)",
                                sub.origin, size)  # fmt: skip
                    raise Refused(409, f"{size}\n", SIZE_TYPE)
                if sub.proof:
                    raise Refused(422, "the proof between equal sizes must be empty\n")
            elif size == 0:
                if sub.proof:
                    raise Refused(422, "the proof from size 0 must be empty\n")
            else:
                try:
                    verify_consistency(size, sub.size, root, sub.root, sub.proof)
                except EvidenceError as exc:
                    log.warning("witness: %s is not consistent with its checkpoint %d: %s",
                                sub.origin, size, exc.message)  # fmt: skip
                    raise Refused(422, "the consistency proof does not verify\n") from None
            return sub.size, sub.root

        await self.state.update(sub.origin, check)
        line = cosign(sub.body, self.config.name, self.key, int(self.clock()))
        log.info("witness: cosigned %s at size %d", sub.origin, sub.size)
        return line


def create_app(witness: Witness) -> web.Application:
    async def add_checkpoint(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.Response(status=413, text="body too large\n")
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return web.Response(status=413, text="body too large\n")
        try:
            line = await witness.add_checkpoint(raw)
        except Refused as refused:
            return web.Response(
                status=refused.status, text=refused.text, content_type=refused.content_type
            )
        return web.Response(text=line, content_type="text/plain")

    async def info(request: web.Request) -> web.Response:
        return web.Response(text=witness.vkey + "\n", content_type="text/plain")

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/add-checkpoint", add_checkpoint)
    app.router.add_get("/", info)
    return app


def config_text(name: str, port: int, logs: dict[str, list[str]]) -> str:
    """A ``witness.yaml`` for ``witness init``."""
    data: dict[str, Any] = {
        "name": name,
        "listen": {"host": "127.0.0.1", "port": port},
        "key_file": "witness.key",
        "state_file": "state.json",
        "logs": [{"origin": o, "keys": k} for o, k in logs.items()],
    }
    return (
        "# signoff witness (C2SP tlog-witness). logs: the origins it witnesses and the\n"
        "# note verifier keys (name+hash+key) of each log's signing keys.\n"
        + yaml.safe_dump(data, sort_keys=False)
    )


__all__ = [
    "Refused",
    "State",
    "Witness",
    "WitnessConfig",
    "config_text",
    "create_app",
    "load_config",
    "load_key",
    "parse_submission",
]
