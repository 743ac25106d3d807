"""The fake as an aiohttp application: :class:`FakePatchwork`.

One handler for every path: it records the request (:attr:`~FakePatchwork.received`),
plays an outage or a delay if told to, then routes as Patchwork's
``urls.py`` does: ``/xmlrpc/`` to :mod:`.xmlrpc`, downloads to
:mod:`.downloads`, API paths to :mod:`.reads` or :mod:`.writes`, a path
that only lacks its final slash to Django's ``APPEND_SLASH`` redirect, and
anything else to the 404 page; then it turns their errors into Patchwork's
answers (DRF's ``{"detail": ...}``, Django's 500 page).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

from aiohttp import web

from tests.fake.api import (
    NOT_FOUND_PAGE,
    SERVER_ERROR_PAGE,
    VERSION,
    _allow,
    _Ctx,
    _dumps,
    _Http,
    _Route,
    _route,
    _ServerError,
)
from tests.fake.downloads import Downloads, _download_parts
from tests.fake.seed import Seeding
from tests.fake.state import DEFAULT_STATES, State
from tests.fake.writes import Writes, _FieldError
from tests.fake.xmlrpc import XMLRPC_PATH, _XmlRpc


@dataclass(frozen=True)
class Received:
    """One request as the fake received it (see :attr:`FakePatchwork.received`)."""

    method: str
    #: The raw path and query string.
    path: str
    #: Every header, as sent (a repeated header keeps its last value).
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """A header by name, whatever its case."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    @property
    def authorization(self) -> str | None:
        return self.header("Authorization")

    @property
    def content_type(self) -> str | None:
        return self.header("Content-Type")

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> list[tuple[str, str]]:
        """A URL-encoded body's fields, repeated keys and all."""
        return parse_qsl(self.body.decode(), keep_blank_values=True)


class FakePatchwork(Seeding, Writes, Downloads):
    """In-memory Patchwork: state, rendering, mutations and an HTTP app.

    Its parts: :class:`~tests.fake.state.Store` (the data and its
    changes), :class:`~tests.fake.reads.Reads`, :class:`~tests.fake.writes.Writes`,
    :class:`~tests.fake.downloads.Downloads`, :class:`~tests.fake.seed.Seeding`
    (from a recorded crawl); this class adds the application.

    Every public method takes the lock, so tests may change the fake while
    its application serves requests in another thread.
    """

    def __init__(self, states: Iterable[State] = DEFAULT_STATES) -> None:
        super().__init__(states)
        #: The 404 page for unknown paths, split around the quoted path.
        self.not_found_page = NOT_FOUND_PAGE
        #: Requests served (all of them, whatever the answer).
        self.requests = 0
        #: Every request's method and path with query, in order.
        self.request_log: list[str] = []
        #: Every request as received, headers and body included, in order:
        #: the latest :attr:`max_received` of them.
        self.received: list[Received] = []
        self.max_received = 10_000
        #: Answer every request with a 503 (an outage).
        self.down = False
        #: Paths answered with a 500 (a bug of upstream's, on those alone).
        self.failing: set[str] = set()
        #: Seconds to wait before answering each request.
        self.delay = 0.0
        #: Called (outside the lock) with each request's path and query.
        self.on_request: Callable[[str], None] | None = None
        #: Serve Patchwork's XML-RPC API at ``/xmlrpc/`` (its ``ENABLE_XMLRPC``).
        self.serve_xmlrpc = True
        self._xmlrpc = _XmlRpc(self)

    def app(self, origin: str | None = None) -> web.Application:
        """The upstream as an aiohttp application.

        URLs in answers use ``origin`` if given, else the request's own
        scheme and Host (as Django's ``build_absolute_uri`` does).
        """

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            path = request.rel_url.raw_path_qs
            with self._lock:
                self.requests += 1
                self.request_log.append(f"{request.method} {path}")
                self.received.append(Received(request.method, path, dict(request.headers), body))
                if len(self.received) > self.max_received:
                    del self.received[: len(self.received) - self.max_received]
            if self.on_request is not None:
                self.on_request(path)
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.down:
                return web.Response(
                    status=503, text="Service Unavailable", content_type="text/html"
                )
            if request.path in self.failing:
                return web.Response(status=500, text="Server Error", content_type="text/html")
            base = origin or f"{request.scheme}://{request.host}"
            with self._lock:
                return self._answer(request, base, body)

        application = web.Application()
        application.router.add_route("*", "/{tail:.*}", handle)
        return application

    def path_counts(self) -> Counter[str]:
        """How often each path (without query) was requested."""
        with self._lock:
            return Counter(line.split(" ", 1)[1].split("?")[0] for line in self.request_log)

    def reset_requests(self) -> None:
        """Start counting requests afresh (say, before a sync under test);
        :attr:`received` empties too."""
        with self._lock:
            self.requests = 0
            self.request_log.clear()
            self.received.clear()

    def writes_received(self) -> list[Received]:
        """The requests received other than reads (GET, HEAD), in order."""
        with self._lock:
            return [r for r in self.received if r.method not in ("GET", "HEAD")]

    def _not_found_page(self, path: str) -> web.Response:
        before, after = self.not_found_page
        page = before + quote(path) + after
        return web.Response(status=404, text=page, content_type="text/html", charset="utf-8")

    @staticmethod
    def _route_of(path: str, method: str) -> _Route | None:
        """The route of a path (at any version whose URL patterns have it)."""
        return _route(path)

    def _answer(self, request: web.Request, origin: str, raw_body: bytes) -> web.StreamResponse:
        path = request.path
        method = request.method
        if self.serve_xmlrpc and path in (XMLRPC_PATH, XMLRPC_PATH.rstrip("/")):
            return self._xmlrpc.view(request, raw_body)
        raw_path = request.rel_url.raw_path
        reading = method in ("GET", "HEAD")
        download = _download_parts(raw_path) if reading else None
        if download is not None:
            return self._download(request, download, self._not_found_page(path))
        route = self._route_of(path, method)
        if route is None:
            slashed = self._route_of(path + "/", method) is not None or (
                reading and _download_parts(raw_path + "/") is not None
            )
            if not path.endswith("/") and slashed:
                # Django's APPEND_SLASH.
                raw = request.rel_url.raw_query_string
                location = request.rel_url.raw_path + "/" + (f"?{raw}" if raw else "")
                return web.Response(
                    status=301,
                    headers={"Location": location},
                    content_type="text/html",
                    charset="utf-8",
                )
            return self._not_found_page(path)
        headers = {"Allow": _allow(route), "Vary": "Accept"}

        def answer(status: int, body: Any, extra: dict[str, str] | None = None) -> web.Response:
            return web.Response(
                status=status,
                body=_dumps(body),
                headers={**headers, **(extra or {})},
                content_type="application/json",
            )

        query: dict[str, list[str]] = {}
        raw_query = request.rel_url.raw_query_string
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            query.setdefault(key, []).append(value)
        fmt = query.get("format", [None])[-1]
        ctx = _Ctx.of(origin, route.versioned, fmt, route.version or VERSION)
        try:
            # DRF negotiates the format before it authenticates.
            if fmt not in (None, "", "json"):
                raise _Http(404, "Not found.")
            auth = request.headers.get("Authorization")
            if method in ("GET", "HEAD"):
                base = f"{origin}{request.rel_url.raw_path}"
                status, body, extra = self._read(route, auth, query, raw_query, ctx, base)
            else:
                content_type = request.headers.get("Content-Type")
                status, body, extra = self._write(method, route, auth, content_type, raw_body, ctx)
            if body is None:  # DRF drops the Content-Type of an empty answer
                return web.Response(status=status, headers=headers)
            return answer(status, body, extra)
        except _Http as exc:
            return answer(exc.status, {"detail": exc.detail})
        except _FieldError as exc:
            return answer(400, exc.detail)
        except _ServerError:
            return web.Response(
                status=500, text=SERVER_ERROR_PAGE, content_type="text/html", charset="utf-8"
            )
