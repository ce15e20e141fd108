"""The one error root of signoff and its families.

Every error carries a one-line, actionable ``diagnostics()`` for the user. HTTP mapping
(problem+json) happens once, in ``bot.api.problems``; the CLI prints ``diagnostics()``.
"""

from __future__ import annotations

from collections.abc import Sequence


class SignoffError(Exception):
    """Root of every error signoff raises on purpose."""

    #: stable problem ``type`` suffix and HTTP status used by the API middleware
    slug = "error"
    status = 500

    def __init__(self, message: str, *, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = tuple(details)

    def diagnostics(self) -> str:
        """One line for a human: what is wrong (and, where known, what to do)."""
        return self.message


class ConfigError(SignoffError):
    slug = "config"


class PolicyError(SignoffError):
    """A policy that cannot be loaded; ``details`` holds one ``file:line: problem`` per issue."""

    slug = "policy"

    #: what to do about it, appended to ``diagnostics()`` (e.g. the command that lists all)
    hint = ""

    def diagnostics(self) -> str:
        text = self.message
        if self.details:
            text = f"{self.message}: {self.details[0]}" + (
                f" (and {len(self.details) - 1} more)" if len(self.details) > 1 else ""
            )
        return f"{text}; {self.hint}" if self.hint else text


class RequestError(SignoffError):
    """The caller sent something we cannot accept (400 family)."""

    slug = "bad-request"
    status = 400


class UnsupportedMediaType(RequestError):
    slug = "unsupported-media-type"
    status = 415


class PayloadTooLarge(RequestError):
    slug = "payload-too-large"
    status = 413


class NotFound(RequestError):
    slug = "not-found"
    status = 404


class Conflict(RequestError):
    """A compare-and-set lost, an idempotency key was reused, or a grant was already used."""

    slug = "conflict"
    status = 409


class RateLimited(RequestError):
    slug = "rate-limited"
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotAuthorized(SignoffError):
    """The caller is not who they must be (unknown token, not an approver, self-approval)."""

    slug = "unauthorized"
    status = 401


class Forbidden(NotAuthorized):
    slug = "forbidden"
    status = 403


class EvidenceError(SignoffError):
    """A signature, digest, proof or grant does not verify."""

    slug = "evidence-invalid"
    status = 403


class StoreError(SignoffError):
    """The store is unreachable or failed; the API answers 503 and nothing is allowed."""

    slug = "store-unavailable"
    status = 503


class ChannelError(SignoffError):
    """A chat platform or pager could not be reached or refused a call."""

    slug = "channel"
    status = 502
