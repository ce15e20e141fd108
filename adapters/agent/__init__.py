"""The agent side of signoff: clients, the ``require_approval`` wrapper, offline grant and
callback verification, the MCP gateway and framework integrations.

Import from here::

    from adapters.agent import AsyncSignoff, Signoff, require_approval, Denied

Framework integrations live in ``adapters.agent.integrations`` and import their framework
only there, so this package works without any of them installed.
"""

from adapters.agent.approval import Approvals, AsyncApprovals, require_approval
from adapters.agent.client import AsyncSignoff, Signoff
from adapters.agent.errors import (
    AgentError,
    ApiError,
    Blocked,
    Cancelled,
    Denied,
    Expired,
    GrantRefused,
    Pending,
    Refused,
    Unavailable,
)
from adapters.agent.grants import AsyncGrantVerifier, GrantVerifier
from adapters.agent.state import RequestState

__all__ = [
    "AgentError",
    "ApiError",
    "Approvals",
    "AsyncApprovals",
    "AsyncGrantVerifier",
    "AsyncSignoff",
    "Blocked",
    "Cancelled",
    "Denied",
    "Expired",
    "GrantRefused",
    "GrantVerifier",
    "Pending",
    "Refused",
    "RequestState",
    "Signoff",
    "Unavailable",
    "require_approval",
]
