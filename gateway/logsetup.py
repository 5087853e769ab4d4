"""Logging: key=value text or JSON lines on standard error.

Structured fields travel in ``extra={"fields": {...}}``; :func:`event` is the
short way to emit one. Values are escaped so that nothing a client sends
(a Message-ID with a line break, say) can forge a log line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any


def event(logger: logging.Logger, level: int, name: str, /, **fields: Any) -> None:
    """Log the event ``name`` with ``fields`` as structured data."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


def _text_value(value: Any) -> str:
    if not isinstance(value, str):
        return json.dumps(value, default=str, ensure_ascii=False)
    if value and value.isprintable() and not any(c in value for c in ' "='):
        return value
    return json.dumps(value, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2026-11-28T05:20:13.123Z info sealgate.intake transaction key=value ...``"""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if not message.isprintable():
            message = json.dumps(message, ensure_ascii=False)
        parts = [_timestamp(record), record.levelname.lower(), record.name, message]
        parts += [f"{key}={_text_value(value)}" for key, value in _fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JSONFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        data.update(_fields(record))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def configure(level: str = "info", fmt: str = "text", stream: IO[str] | None = None) -> None:
    """Send all of Sealgate's logging to ``stream`` (standard error by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiosmtpd logs every command at INFO, addresses included; our own
    # transaction line replaces that, so only its warnings get through.
    aiosmtpd_log = logging.getLogger("mail.log")
    aiosmtpd_log.setLevel(max(logging.WARNING, root.level))
    if not any(isinstance(f, _AiosmtpdNoise) for f in aiosmtpd_log.filters):
        aiosmtpd_log.addFilter(_AiosmtpdNoise())


class _AiosmtpdNoise(logging.Filter):
    """aiosmtpd 1.4 warns about its own use of ``Session.login_data`` on every AUTH."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Session.login_data is deprecated")
