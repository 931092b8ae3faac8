"""Structured logging: one JSON object per line (or plain text), secrets never written."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else was passed with `extra=` and is a field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# Belt and braces: values that look like credentials are masked even if a caller slips.
_SECRET_KEYS = re.compile(r"(pass(word)?|secret|token|api_?key|authorization)", re.I)
_SECRET_IN_TEXT = re.compile(
    r"((?:pass(?:word)?|secret|token|api_?key)\s*[=:]\s*)([^\s,;&]+)", re.I
)


def redact(text: str) -> str:
    """Mask `password=...`-style values inside free text."""
    return _SECRET_IN_TEXT.sub(r"\1***", text)


def _safe(key: str, value: Any) -> Any:
    if _SECRET_KEYS.search(key):
        return "***"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """Format records as JSON: time, level, logger, message and every `extra=` field."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = _safe(key, value)
        if record.exc_info:
            payload["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    """Plain text with `key=value` extras appended, for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={_safe(k, v)}"
            for k, v in vars(record).items()
            if k not in _STANDARD and not k.startswith("_")
        )
        base = f"{record.levelname:<7} {record.name}: {redact(record.getMessage())}"
        return f"{base} {extras}" if extras else base


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Route the root logger to stderr in the chosen format (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
