"""Console passwords: Argon2id hashes (libsodium via PyNaCl, ``nacl.pwhash.argon2id``).

Hashing and verifying cost ~64 MiB and tens of milliseconds on purpose, so the async
wrappers run them on a worker thread. Verifying raises ``NotAuthorized`` on a mismatch (a
security check never answers a bool a caller could forget to read). Verifying against the
dummy hash for unknown users keeps the time of a failed login independent of whether the
name exists.
"""

from __future__ import annotations

import asyncio
import functools

import nacl.exceptions
import nacl.pwhash

from bot.errors import NotAuthorized, RequestError

MIN_LENGTH = 8
MAX_LENGTH = 1024

_OPS = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
_MEM = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE


def hash_password(password: str) -> str:
    """The Argon2id hash string (``$argon2id$v=19$m=…``). Raises ``RequestError`` for a
    password that is too short or too long."""
    if len(password) < MIN_LENGTH:
        raise RequestError(f"the password must have at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise RequestError(f"the password must have at most {MAX_LENGTH} characters")
    return nacl.pwhash.argon2id.str(password.encode("utf-8"), opslimit=_OPS, memlimit=_MEM).decode(
        "ascii"
    )


@functools.cache
def dummy_hash() -> str:
    """A hash of a random-looking constant, verified when the user does not exist."""
    return hash_password("signoff-no-such-user-" + "x" * 16)


def verify_password(password_hash: str, password: str) -> None:
    """Return only when ``password`` matches ``password_hash``. Raises ``NotAuthorized``
    otherwise (also for a malformed hash and over-long input)."""
    if len(password) > MAX_LENGTH:
        raise NotAuthorized("wrong password")
    try:
        matched = nacl.pwhash.verify(password_hash.encode("ascii"), password.encode("utf-8"))
    except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError, ValueError):
        matched = False
    if not matched:
        raise NotAuthorized("wrong password")


async def verify_password_async(password_hash: str | None, password: str) -> None:
    """``verify_password`` on a worker thread. ``None`` (no such user) verifies against the
    dummy hash, taking the same time, and always raises ``NotAuthorized``."""
    target = password_hash if password_hash is not None else dummy_hash()
    await asyncio.to_thread(verify_password, target, password)
    if password_hash is None:
        raise NotAuthorized("wrong password")
