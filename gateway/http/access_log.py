"""The access log: one line per request (``[server] access_log``).

Client, request line, status, bytes and milliseconds; in JSON (gateway.ops.logs)
also the route template, the User-Agent and whether credentials came,
never what they were.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from gateway.api.routing import UNMATCHED
from gateway.http.context import LABEL
from gateway.upstream.identity import has_credentials


class AccessLogger(AbstractAccessLogger):
    """One line per request: who, what, the answer, how long it took."""

    def log(
        self, request: web.BaseRequest, response: web.StreamResponse, time_taken: float
    ) -> None:
        label = request.get(LABEL, UNMATCHED)
        self.logger.info(
            '%s "%s %s" %d %d %.2fms',
            request.remote,
            request.method,
            request.rel_url.raw_path_qs,
            response.status,
            response.body_length,
            time_taken * 1000,
            extra={
                "remote": request.remote,
                "method": request.method,
                "path": request.rel_url.raw_path_qs,
                "status": response.status,
                "bytes": response.body_length,
                "ms": round(time_taken * 1000, 3),
                "route": label,
                "user_agent": request.headers.get("User-Agent", ""),
                # Whether credentials came (never what they were).
                "identified": has_credentials(request),
            },
        )
