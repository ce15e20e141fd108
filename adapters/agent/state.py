"""The agent's view of one signoff request (SPEC §6 answer), and how a final state maps to
the typed refusals of ``adapters.agent.errors``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.agent.errors import ApiError, Blocked, Cancelled, Denied, Expired, Refused


@dataclass(frozen=True, slots=True)
class RequestState:
    """A request as ``GET /v1/requests/{id}`` shows it. ``raw`` keeps the whole answer."""

    id: str
    status: str
    tier: str
    tool: str
    arguments_sha256: str
    call_sha256: str
    agent_id: str
    reason: str | None = None
    grant: str | None = None
    deadline: str | None = None
    policy_rule: str | None = None
    policy_version: str | None = None
    approvals_required: int = 0
    approvals_received: int = 0
    outcome: str | None = None
    approved_arguments: Mapping[str, Any] | None = None
    """Set when an approver edited the arguments: the grant binds these, so run these."""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: Any) -> RequestState:
        """Parse an API answer. Raises ``ApiError`` when it is not a request object."""
        try:
            policy = data.get("policy") or {}
            approvals = data.get("approvals") or {}
            return cls(
                id=str(data["id"]),
                status=str(data["status"]),
                tier=str(data["tier"]),
                tool=str(data["tool"]),
                arguments_sha256=str(data["arguments_sha256"]),
                call_sha256=str(data["call_sha256"]),
                agent_id=str((data.get("agent") or {})["id"]),
                reason=data.get("reason"),
                grant=data.get("grant"),
                deadline=data.get("deadline"),
                policy_rule=policy.get("rule"),
                policy_version=policy.get("version"),
                approvals_required=int(approvals.get("required") or 0),
                approvals_received=int(approvals.get("received") or 0),
                outcome=data.get("outcome"),
                approved_arguments=_object_or_none(data.get("approved_arguments")),
                raw=dict(data),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ApiError(502, f"unexpected answer from signoff: {exc!r}") from exc

    @property
    def final(self) -> bool:
        return self.status != "pending"

    @property
    def approved(self) -> bool:
        return self.status == "approved" and self.grant is not None

    def refusal(self) -> Refused | None:
        """The typed refusal for a final, not-approved state (None if approved or pending)."""
        if self.status == "denied":
            kind: type[Refused] = Blocked if self.tier == "block" else Denied
            return kind(self.tool, self.reason, request_id=self.id)
        if self.status == "expired":
            return Expired(self.tool, self.reason, request_id=self.id)
        if self.status == "cancelled":
            return Cancelled(self.tool, self.reason, request_id=self.id)
        if self.status == "approved" and self.grant is None:
            return Denied(self.tool, "approved without a grant", request_id=self.id)
        return None

    def raise_for_refusal(self) -> RequestState:
        """Return self when approved or pending; raise ``Denied``/``Blocked``/``Expired``/
        ``Cancelled`` when final and not approved."""
        refusal = self.refusal()
        if refusal is not None:
            raise refusal
        return self


def _object_or_none(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError("approved_arguments is not an object")
    return value


__all__ = ["RequestState"]
