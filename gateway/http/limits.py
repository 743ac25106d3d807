"""Bounds on what one request may make the gateway do.

Every request is checked before any work: its method, the length of its
Host, path and query, the number of query parameters and of values per
parameter, and a search's size.  What is beyond a bound gets a clear 4xx
in Patchwork's JSON shape; every real client stays far below them (the
longest legitimate queries are a few hundred bytes: a subject as ``q``,
six ``state`` values).  With these bounds no request can compile an
unbounded SQL statement, hold the event loop, or put an unbounded key
in a cache.

aiohttp itself bounds the request line and each header (8 KiB) and
answers malformed HTTP with a 400; :func:`quiet_protocol_errors` keeps
those answers and log lines short, without echoing the bad bytes or a
traceback.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiMapping

from gateway.http.responses import Answer, detail
from mirror.query import search_terms

#: Methods Patchwork's views serve; any other is refused here.
METHODS = frozenset(("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"))
#: A host name is at most 253 characters, then a port.
MAX_HOST = 262
MAX_PATH = 2048
#: The ``Link`` header repeats the URL four times: a longer query would
#: make it too long for common clients and proxies (8 KiB per header).
MAX_QUERY = 2048
MAX_PARAMETERS = 64
#: Values of one repeated parameter (``state=1&state=2...``).
MAX_VALUES = 64
#: A search: characters, and terms (each is a LIKE per searched column).
MAX_SEARCH = 1024
MAX_SEARCH_TERMS = 32
#: Request bodies (forwarded writes), as Django's own default bound.
MAX_BODY = 2_621_440


def check(request: web.Request, allow: str | None) -> Answer | None:
    """The refusal of a request beyond a bound, or ``None``.

    ``allow`` is the ``Allow`` header of the API view the path names, if any.
    """
    if request.method not in METHODS:
        return detail(405, f'Method "{request.method[:32]}" not allowed.', allow)
    if len(request.headers.get("Host", "")) > MAX_HOST:
        return detail(400, "The Host header is too long.")
    url = request.rel_url
    if len(url.raw_path) > MAX_PATH or len(url.raw_query_string) > MAX_QUERY:
        return detail(414, "Request-URI too long.")
    params: MultiMapping[str] = request.query
    if len(params) > MAX_PARAMETERS:
        return detail(400, f"Too many query parameters (at most {MAX_PARAMETERS}).")
    for name in set(params):
        if len(params.getall(name)) > MAX_VALUES:
            return detail(400, f"Too many values of {name[:40]!r} (at most {MAX_VALUES}).")
    searched = params.getall("q", [])
    if searched:
        q = searched[-1]
        if len(q) > MAX_SEARCH or len(search_terms(q)) > MAX_SEARCH_TERMS:
            return detail(
                400,
                f"Search too long (at most {MAX_SEARCH} characters and {MAX_SEARCH_TERMS} words).",
            )
    return None


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


_original_handle_error = web_protocol.RequestHandler.handle_error


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
    return _original_handle_error(self, request, status, exc, message)


def quiet_protocol_errors() -> None:
    """Install the two above (idempotent)."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _ShortProtocolErrors) for f in server_log.filters):
        server_log.addFilter(_ShortProtocolErrors())
    web_protocol.RequestHandler.handle_error = _handle_error  # type: ignore[method-assign]
