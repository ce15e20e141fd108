"""Clocks: the system clock used in production (tests inject their own ``Clock``)."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    """Aware UTC wall-clock time."""

    def now(self) -> datetime:
        return datetime.now(UTC)
