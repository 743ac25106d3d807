"""Log lines: plain text or one JSON object a line (``[logging] format``).

One line per request (``[server] access_log``: gateway.http.access_log)
and per sync step.  In
JSON, the fields a line carries beyond its message (``extra={"status":
200, ...}``) are keys of their own.  No line ever carries a
caller's credentials: the request line is the method, path and query
(Patchwork takes no credentials in the URL), and no header is logged but
the User-Agent.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

#: Attributes every LogRecord has; anything else was passed as ``extra``.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """``{"time": ..., "level": ..., "logger": ..., "message": ..., extras}``."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        document.update(_extras(record))
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(document, default=str).decode()
        except orjson.JSONEncodeError:  # a client's undecodable bytes (surrogates)
            return json.dumps(document, default=str)


def setup(level: str, fmt: str = "text") -> None:
    """Log to standard error at ``level`` (``DEBUG``...), as ``fmt``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level))
