"""Time bounds typed by people: ``--since 7d`` on the command line, filters in the console."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.errors import RequestError
from bot.settings import parse_duration


def parse_time(text: str, now: datetime) -> datetime:
    """``2026-11-21``, ``2026-11-21T10:00[:00][Z|+01:00]`` (no zone means UTC), or a
    duration back from ``now`` (``30m``, ``24h``, ``7d``). Raises ``RequestError``."""
    value = text.strip()
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RequestError(
            f"{text!r} is not a time: use 2026-11-21, 2026-11-21T10:00Z or 7d (days ago)"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
