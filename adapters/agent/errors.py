"""Typed outcomes an agent gets back from signoff, with text fit to hand to a model.

Every refusal says what happened, why (the human's reason or the policy's), and what the
model may do next, in one or two plain sentences: ``str(exc)`` is that text. These errors
are for agent code and the framework integrations; the server side never raises them.

Hierarchy::

    AgentError (bot.errors.SignoffError)
      Refused                  the call must not run
        Denied                 a human said no (reason)
        Blocked                the policy never allows it (reason)
        Expired                nobody decided before the deadline
        Cancelled              the agent withdrew the request
        GrantRefused           the grant does not verify for the call about to run
      Pending                  still waiting for a human when the wait ended
      Unavailable              signoff cannot be reached or failed (fail closed: do not run)
      ApiError                 signoff refused the HTTP request itself (4xx problem)
"""

from __future__ import annotations

from bot.errors import SignoffError


class AgentError(SignoffError):
    """Root of the agent-side errors. ``request_id`` names the signoff request, if any."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class Refused(AgentError):
    """The tool call must not run. ``reason`` is the human's or the policy's words."""

    verb = "refused"

    def __init__(self, tool: str, reason: str | None = None, *, request_id: str | None = None):
        self.tool = tool
        self.reason = (reason or "").strip() or None
        super().__init__(self._text(), request_id=request_id)

    def _text(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"The call to {self.tool} was {self.verb}{why}. Do not retry it unchanged."


class Denied(Refused):
    """A human approver denied the call; ``reason`` is what they wrote."""

    verb = "denied by a human approver"


class Blocked(Refused):
    """The tool policy blocks this call outright; no human can approve it."""

    verb = "blocked by policy"

    def _text(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"The call to {self.tool} is blocked by policy{why}. It will never be allowed."


class Expired(Refused):
    """Nobody decided before the deadline; signoff denied it (fail closed)."""

    verb = "not approved in time"

    def _text(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return (
            f"The call to {self.tool} was not approved in time{why}. "
            "Ask the user whether to submit it again."
        )


class Cancelled(Refused):
    """The request was withdrawn before a decision."""

    verb = "cancelled"


class GrantRefused(Refused):
    """The grant does not authorise the call about to run (different arguments, tool or
    request; expired; already used; bad signature). The call is not run."""

    verb = "not run"

    def _text(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return (
            f"The call to {self.tool} was not run because its approval does not cover it{why}. "
            "If the arguments changed, the new call needs its own approval."
        )


class Pending(AgentError):
    """Still waiting for a human when the wait ended; the request stays open."""

    def __init__(self, tool: str, request_id: str, waited: float) -> None:
        self.tool = tool
        super().__init__(
            f"The call to {tool} is waiting for human approval (signoff request {request_id}); "
            f"no decision after {waited:.0f}s. Try the same call again later to pick up the "
            "decision.",
            request_id=request_id,
        )


class Unavailable(AgentError):
    """signoff could not be reached or failed (network error, 5xx, timeout). Nothing ran."""

    def __init__(self, detail: str, *, request_id: str | None = None) -> None:
        self.detail = detail
        super().__init__(
            f"The approval service is unavailable ({detail}); the call was not run.",
            request_id=request_id,
        )


class ApiError(AgentError):
    """signoff answered with an RFC 9457 problem (4xx). ``status``, ``type``, ``detail``,
    ``errors`` and (for 429) ``retry_after`` come from the answer."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type: str = "",
        errors: tuple[str, ...] = (),
        retry_after: int | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.detail = detail
        self.errors = errors
        self.retry_after = retry_after
        extra = f" ({'; '.join(errors)})" if errors else ""
        later = f" Retry after {retry_after}s." if retry_after else ""
        super().__init__(f"signoff refused the request ({status}): {detail}{extra}.{later}")


__all__ = [
    "AgentError",
    "ApiError",
    "Blocked",
    "Cancelled",
    "Denied",
    "Expired",
    "GrantRefused",
    "Pending",
    "Refused",
    "Unavailable",
]
