"""Logging for ``signoff serve``: one handler on stderr (JSON lines with ``logging.json``),
malformed HTTP requests as one INFO line, and a warning per configuration section an unset
``${VAR}`` left empty.
"""

from __future__ import annotations

import logging
import sys

from aiohttp.http_exceptions import HttpProcessingError

from bot.settings import Settings

log = logging.getLogger(__name__)


def configure_logging(settings: Settings) -> None:
    level = getattr(logging, settings.logging.level.upper(), logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    if settings.logging.json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _MalformedRequestFilter) for f in server_log.filters):
        server_log.addFilter(_MalformedRequestFilter())


def warn_unset_variables(settings: Settings) -> None:
    """One WARNING per configuration section that an unset ``${VAR}`` left empty (which
    switches that adapter off), naming the variables, so a typo or a forgotten ``export``
    does not go unnoticed."""
    sections: dict[str, list[tuple[str, str]]] = {}
    for key, variable in settings.unset_variables:
        sections.setdefault(key.split(".", 1)[0], []).append((key, variable))
    for section, pairs in sections.items():
        names = ", ".join(dict.fromkeys(f"${{{v}}}" for _, v in pairs))
        keys = ", ".join(dict.fromkeys(k for k, _ in pairs))
        log.warning(
            "%s is off or incomplete: %s not set in the environment (%s left empty)",
            section,
            names,
            keys,
        )


class _MalformedRequestFilter(logging.Filter):
    """aiohttp logs a request it cannot parse (bad header bytes, broken framing) as an ERROR
    with a traceback, though it answers the client 400 itself: that is the client's mistake,
    so it becomes one INFO line naming what was wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 400) < 500:
            record.msg = f"{record.getMessage()}: malformed HTTP request ({exc.message})"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.INFO
            record.levelname = "INFO"
            return logging.getLogger().isEnabledFor(logging.INFO)
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        import json

        data = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data)
