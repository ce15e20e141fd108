"""The request the store and evidence benchmarks write by the thousand: an auto-tier
``crm.read`` allowed at once, with cheap stand-in digests (these benchmarks time the store
and the log, not the hashing of arguments)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime

from bot.domain import JSON, PolicyRef, Request, Requirement, Status, Tier, ToolCall

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def auto_request(n: int, arguments: Mapping[str, JSON] | None = None) -> Request:
    """Request ``req-<n>`` (nine digits), approved at ``NOW``; ``arguments`` default to
    ``{"customer": n}``."""
    return Request(
        id=f"req-{n:09d}",
        agent_id="bench-agent",
        call=ToolCall("crm.read", {"customer": n} if arguments is None else arguments, "lookup"),
        tier=Tier.AUTO,
        status=Status.APPROVED,
        policy=PolicyRef("sha256:" + "0" * 64, "v1", "crm-read"),
        requirement=Requirement(),
        created_at=NOW,
        arguments_sha256=hashlib.sha256(str(n).encode()).hexdigest(),
        call_sha256=hashlib.sha256(f"call{n}".encode()).hexdigest(),
        decided_at=NOW,
    )
