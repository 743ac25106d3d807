"""Malformed HTTP: a short 400, one log line, no echo, no traceback.

aiohttp answers a request it cannot parse itself, before any handler or
middleware runs, quoting the bytes it received and logging a traceback.
It has no hook for that answer, so the server process replaces one method
of aiohttp's ``RequestHandler`` (:func:`install`), once, at start; a test
(tests/unit/http/test_protocol.py) fails if an aiohttp upgrade changes
what is replaced.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import HttpProcessingError

#: What is replaced, and its parameters as aiohttp defines them.
REPLACED = web_protocol.RequestHandler.handle_error
PARAMETERS = ("self", "request", "status", "exc", "message")


class _ShortProtocolErrors(logging.Filter):
    """One line, no traceback, for HTTP that does not parse."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = "malformed request from %s: %s"
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.args = (remote, type(exc).__name__)
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


def _handle_error(
    self: web_protocol.RequestHandler,
    request: Any,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> web.StreamResponse:
    # aiohttp's message for a malformed request quotes the bytes received;
    # answer with the status alone.
    if status != 500:
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        message = f"{status} {phrase}".strip()
    return REPLACED(self, request, status, exc, message)


def install() -> None:
    """Install the two above (idempotent): for a server process only."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _ShortProtocolErrors) for f in server_log.filters):
        server_log.addFilter(_ShortProtocolErrors())
    web_protocol.RequestHandler.handle_error = _handle_error  # type: ignore[method-assign]
