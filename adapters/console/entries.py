"""Log entries as the console shows them: the stored envelope decoded (without checking
signatures; "verify now" does that) and the fields people filter on pulled from the
statement. An entry that does not parse is still listed, with the problem named."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.domain import LogEntry
from bot.errors import EvidenceError
from bot.evidence import dsse
from bot.evidence.statement import parse_statement


@dataclass(frozen=True, slots=True)
class EntryView:
    index: int
    event: str
    created_at: datetime
    request_id: str | None
    leaf_hash: str
    envelope: dict[str, Any] | None = None
    statement: dict[str, Any] | None = None
    problem: str | None = None
    tool: str = ""
    agent: str = ""
    approver: str = ""
    approver_id: str = ""
    reason: str = ""
    group: str = ""
    keyids: tuple[str, ...] = field(default=())


def describe(entry: LogEntry) -> EntryView:
    base: dict[str, Any] = {
        "index": entry.index,
        "event": entry.event.value,
        "created_at": entry.created_at,
        "request_id": entry.request_id,
        "leaf_hash": entry.leaf_hash.hex(),
    }
    try:
        envelope = dsse.decode(entry.envelope)
        payload = dsse.b64decode(envelope["payload"], "payload")
        statement = parse_statement(payload)
    except EvidenceError as exc:
        return EntryView(**base, problem=exc.message)
    predicate = statement.get("predicate", {})
    approver = predicate.get("approver") or {}
    return EntryView(
        **base,
        envelope=envelope,
        statement=statement,
        tool=str((predicate.get("request") or {}).get("tool") or ""),
        agent=str((predicate.get("agent") or {}).get("id") or ""),
        approver=str(
            _person(approver.get("person"))
            or approver.get("display_name")
            or approver.get("user_id")
            or ""
        ),
        approver_id=f"{approver.get('platform')}:{approver.get('user_id')}" if approver else "",
        reason=str(predicate.get("reason") or ""),
        group=str(approver.get("group") or ""),
        keyids=tuple(str(s.get("keyid", "")) for s in envelope.get("signatures", [])),
    )


def envelope_text(view: EntryView) -> str:
    """The envelope as pretty JSON with its payload shown decoded next to it."""
    if view.envelope is None:
        return ""
    return json.dumps(
        {"envelope": view.envelope, "payload (decoded)": view.statement},
        indent=2,
        ensure_ascii=False,
    )


def _person(value: object) -> str | None:
    """The person an attestation names, when a ``people:`` entry claimed the account."""
    return value if isinstance(value, str) and ":" not in value else None
