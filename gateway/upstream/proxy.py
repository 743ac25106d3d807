"""Forwarding requests the mirror cannot answer to the configured upstream.

Only the one configured upstream is ever contacted, only for the paths
the caller chose (Patchwork's routes, and other ``/api/`` paths without
dot segments, for a newer Patchwork's endpoints), and the caller's credentials
are passed through untouched and never logged.  URLs in the answer
(JSON URL fields, ``Link``, ``Location``) are rewritten to the gateway's
origin; other content (a patch's diff may well contain the upstream's
URL) is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDictProxy
from yarl import URL

from gateway.responses import Answer, detail, json_body
from gateway.upstream.clients import PerClient, client_key

log = logging.getLogger(__name__)

#: Request headers passed upstream.  Everything else (Host, the client's
#: own X-Forwarded-*, hop-by-hop headers) stays here; upstream is told the
#: client's address as the gateway sees it (gateway.upstream.clients).
FORWARD_REQUEST = ("Authorization", "Content-Type", "Accept", "Cookie", "X-CSRFToken", "Referer")
#: Response headers passed back.
FORWARD_RESPONSE = (
    "Content-Type",
    "Link",
    "Location",
    "Allow",
    "Content-Disposition",
    "WWW-Authenticate",
    "Vary",
    "Retry-After",
)
#: JSON keys whose values are never the upstream's own URLs, even when
#: they happen to start like one: mail content and links to elsewhere.
KEEP_KEYS = frozenset(
    (
        "content",
        "diff",
        "headers",
        "description",
        "name",
        "subject",
        "prefixes",
        "msgid",
        "commit_ref",
        "pull_url",
        "target_url",
        "list_archive_url",
        "list_archive_url_format",
        "commit_url_format",
        "scm_url",
        "webscm_url",
    )
)


#: Requests forwarded at once, and waiting for a turn; beyond, a 503:
#: the gateway never multiplies what upstream receives.
MAX_IN_FLIGHT = 16
MAX_WAITING = 64
#: Forwarded requests of one client at once (in flight or waiting): half
#: the slots, so that one client never holds them all.
MAX_PER_CLIENT = MAX_IN_FLIGHT // 2


def joined_authorization(headers: CIMultiDictProxy[str]) -> str:
    """Several ``Authorization`` headers as upstream reads them: joined with
    commas, as the WSGI servers in front of Django join them."""
    return ",".join(headers.getall("Authorization"))


class Proxy:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 60.0,
        max_bytes: int = 16 << 20,
        in_flight: int = MAX_IN_FLIGHT,
        waiting: int = MAX_WAITING,
        per_client: int = MAX_PER_CLIENT,
        record: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.base = base_url.rstrip("/")
        #: Told of each request: its kind, outcome and seconds (gateway.ops.metrics).
        self._record = record or (lambda kind, outcome, seconds: None)
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 15.0))
        self._max_bytes = max_bytes
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(in_flight)
        refusal = detail(503, "Too many requests are waiting for upstream; retry later.")
        #: The answer when every slot and waiting place is taken.
        self.busy = Answer(503, refusal.body, (*refusal.headers, ("Retry-After", "5")))
        self._max_waiting = waiting
        self._waiting = 0
        self._clients = PerClient(per_client)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, auto_decompress=True, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    def _swap(self, value: str, origin: str) -> str:
        if value.startswith(self.base + "/") or value == self.base:
            return origin + value[len(self.base) :]
        return value

    def _rewrite(self, data: Any, origin: str) -> Any:
        """Point every upstream URL in a JSON document at the gateway."""
        if isinstance(data, str):
            return self._swap(data, origin)
        if isinstance(data, list):
            return [self._rewrite(item, origin) for item in data]
        if isinstance(data, dict):
            return {
                key: value if key in KEEP_KEYS else self._rewrite(value, origin)
                for key, value in data.items()
            }
        return data

    async def forward(self, request: web.Request, origin: str, client: str) -> Answer:
        """Upstream's answer to ``request`` from ``client`` (its address), or
        a 503 when too many wait, or this client has its share under way."""
        if not self._clients.enter(client_key(client)):
            self._record("forward", "busy", 0.0)
            return self.busy
        try:
            headers = {k: request.headers[k] for k in FORWARD_REQUEST if k in request.headers}
            if "Authorization" in headers:  # (several: joined, as upstream reads them)
                headers["Authorization"] = joined_authorization(request.headers)
            # Upstream should see who is asking, not only the gateway.
            if client:
                headers["X-Forwarded-For"] = client
            body = await request.read() if request.can_read_body else None
            target = request.rel_url.raw_path_qs
            return await self.send(request.method, target, headers, body, origin)
        finally:
            self._clients.leave(client_key(client))

    async def send(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes | None = None,
        origin: str | None = None,
        kind: str = "forward",
    ) -> Answer:
        """Send one request upstream in a free slot; URLs point at ``origin``.

        ``kind`` names why, for the metrics."""
        if self._slots.locked() and self._waiting >= self._max_waiting:
            self._record(kind, "busy", 0.0)
            return self.busy
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        started = time.perf_counter()
        outcome = "unreachable"
        try:
            answer, outcome = await self._send(method, target, headers, body, origin or self.base)
            return answer
        finally:
            self._slots.release()
            self._record(kind, outcome, time.perf_counter() - started)

    async def _send(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None, origin: str
    ) -> tuple[Answer, str]:
        # As the client encoded it: re-encoding would change what upstream
        # sees (and echoes in a Location: ``%40`` became ``@``).
        url = URL(self.base + target, encoded=True)
        path = target.split("?", 1)[0]
        try:
            async with self._client().request(
                method, url, headers=headers, data=body, allow_redirects=False
            ) as resp:
                chunks, size = [], 0
                async for chunk in resp.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > self._max_bytes:
                        return detail(502, "Upstream answer too large."), "too_large"
                    chunks.append(chunk)
                payload = b"".join(chunks)
                status = resp.status
                out_headers = [(k, resp.headers[k]) for k in FORWARD_RESPONSE if k in resp.headers]
        except TimeoutError:
            log.warning("%s %s: upstream timed out", method, path)
            return detail(504, "Upstream Patchwork did not answer in time."), "timeout"
        except aiohttp.ClientError as exc:
            log.warning("%s %s: upstream unreachable: %s", method, path, type(exc).__name__)
            return detail(502, "Upstream Patchwork is unreachable."), "unreachable"

        rewritten = []
        for key, value in out_headers:
            if key == "Link":
                value = value.replace(f"<{self.base}/", f"<{origin}/")
            elif key == "Location":
                value = self._swap(value, origin)
            rewritten.append((key, value))
        ctype = dict(rewritten).get("Content-Type", "")
        if ctype.startswith("application/json") and payload:
            with contextlib.suppress(orjson.JSONDecodeError):
                payload = json_body(self._rewrite(orjson.loads(payload), origin))
        return Answer(status, payload, tuple(rewritten)), f"{status // 100}xx"
