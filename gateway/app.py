"""The aiohttp application: dispatch, caching, and what goes upstream.

Anonymous GET and HEAD requests for the API are answered from the mirror
(and cached until the mirror changes).  Requests carrying credentials and
writes belong upstream until the gateway knows identities: they are
forwarded with the caller's own credentials.  Site pages and downloads
are redirected to the upstream, except the legacy by-id redirects, which
the mirror answers.
"""

from __future__ import annotations

import logging
import re
import sqlite3

import orjson
from aiohttp import web

from gateway import api, limits
from gateway.cache import ResponseCache
from gateway.config import Config
from gateway.negotiation import Choice, negotiate
from gateway.proxy import Proxy
from gateway.reader import QueryTooSlow, Reader, ReaderBusy
from gateway.responses import Answer, NotFoundPage, detail, escape_uri_path, redirect
from gateway.routing import ApiRoute, SiteRoute, resolve_api, resolve_site, resolves
from gateway.status import SYNCED_HEADER, SyncStatus, status_handler
from gateway.webhooks import webhook_handler
from mirror.control import Control

log = logging.getLogger(__name__)

READ_METHODS = ("GET", "HEAD")
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")

STATE: web.AppKey[GatewayState] = web.AppKey("state")


class GatewayState:
    """Everything the handler needs, built at start-up."""

    def __init__(
        self, config: Config, reader: Reader, *, demo: bool = False, control: Control | None = None
    ) -> None:
        self.config = config
        self.reader = reader
        self.control = control
        self.sync = SyncStatus(control, reader)
        self.upstream = config.upstream.url
        self.proxy = (
            Proxy(self.upstream, timeout=config.upstream.timeout) if self.upstream else None
        )
        self.cache = ResponseCache(config.server.cache_bytes)
        self.not_found = NotFoundPage()
        self.mode_header = (
            "demo mirror built from the test fixtures (no upstream configured)"
            if demo
            else "mirror"
        )
        reader.on_change(self._changed)

    def _changed(self) -> None:
        self.cache.clear()
        self.load_404()  # the first sync may just have learnt it

    def load_404(self) -> None:
        raw = self.reader.meta("upstream.404")
        if raw:
            before, after = orjson.loads(raw)
            self.not_found = NotFoundPage((before, after))


def _credentials(request: web.Request) -> bool:
    return "Authorization" in request.headers or "sessionid" in request.cookies


def _origin(request: web.Request, state: GatewayState) -> str | None:
    """The origin URLs point at, or ``None`` for a Host we do not serve."""
    host = request.headers.get("Host", "")
    if len(host) > limits.MAX_HOST or not _HOST.match(host):
        return None
    allowed = state.config.server.allowed_hosts
    if allowed and host.rsplit(":", 1)[0].strip("[]").lower() not in allowed:
        return None
    if state.config.server.public_url:
        return state.config.server.public_url
    return f"{request.scheme}://{host}"


def _respond(
    request: web.Request, answer: Answer, state: GatewayState, source: str
) -> web.Response:
    headers = dict(answer.headers)
    headers["X-Patchwork-Gateway"] = state.mode_header if source == "mirror" else source
    synced = state.sync.header()
    if synced:
        headers[SYNCED_HEADER] = synced
    # aiohttp sends no body for HEAD, but keeps the GET's Content-Length.
    return web.Response(status=answer.status, body=answer.body, headers=headers)


def _slash_or_404(path: str, raw_query: str, state: GatewayState) -> Answer:
    if not path.endswith("/") and resolves(path + "/"):
        location = escape_uri_path(path) + "/"
        if location.startswith("//"):
            location = "/%2F" + location[2:]
        if raw_query:
            location += "?" + raw_query
        return redirect(301, location)
    return state.not_found.answer(path)


async def handle(request: web.Request) -> web.Response:
    state = request.app[STATE]
    path = request.path
    raw_query = request.rel_url.raw_query_string
    origin = _origin(request, state)
    if origin is None:
        return web.Response(status=400, text="Bad Request: invalid Host header\n")
    read = request.method in READ_METHODS
    formats = request.query.getall("format", [])
    choice = negotiate(formats[-1] if formats else None, request.headers.get("Accept"))
    anonymous_read = read and not _credentials(request) and choice is Choice.JSON
    key = (origin, request.rel_url.raw_path_qs)
    if anonymous_read:
        # Only anonymous JSON reads of the API are ever cached: answer at once.
        cached = state.cache.get(key)
        if cached is not None:
            return _respond(request, cached, state, "mirror")

    route = resolve_api(path) if path.startswith("/api/") else None
    # (A cached answer passed this before: same method class, Host and URL.)
    refusal = limits.check(request, api.allowed(route) if route else None)
    if refusal is not None:
        return _respond(request, refusal, state, "mirror")
    if route is None:
        site = resolve_site(path)
        if site is None:
            return _respond(request, _slash_or_404(path, raw_query, state), state, "mirror")
        return await _site(request, site, state)

    if read and choice is Choice.NO_SUCH_FORMAT:
        return _respond(request, detail(404, "Not found.", api.allowed(route)), state, "mirror")
    if read and choice is Choice.NOT_ACCEPTABLE:
        message = "Could not satisfy the request Accept header."
        return _respond(request, detail(406, message, api.allowed(route)), state, "mirror")

    # Credentials and writes go upstream, as do requests for the browsable
    # (HTML) API, which only the upstream renders for now.
    if not anonymous_read:
        if state.proxy is None and not (read and _public(route)):
            return _respond(
                request,
                detail(503, "This gateway has no upstream to forward this request to."),
                state,
                "mirror",
            )
        if state.proxy is not None:
            answer = await state.proxy.forward(request, origin)
            if not (answer.status >= 500 and read and _public(route)):
                return _respond(request, answer, state, "upstream")
            # Upstream failed on a read of public data (credentials passed
            # its authentication, else it answers 403 first), is down, or
            # every forwarding slot is taken: the mirror's JSON is the best
            # answer left.
            if answer is not state.proxy.busy:
                log.warning("upstream answered %d; serving %s from the mirror", answer.status, path)

    generation = state.reader.generation
    try:
        answer = await api.serve(route, request.query, raw_query, path, origin, state.reader)
    except QueryTooSlow:
        answer = detail(503, "This query takes too long; narrow it down.", api.allowed(route))
    except ReaderBusy:
        answer = _retry_later("Too many slow queries are waiting; retry in a few seconds.")
    except sqlite3.Error as exc:
        # A locked, damaged or vanished mirror: a clean answer to retry,
        # and one log line.
        log.warning("%s %s: the mirror cannot answer: %s", request.method, path, exc)
        answer = _retry_later("The mirror cannot answer right now; retry in a few seconds.")
    if anonymous_read and answer.status < 500 and generation == state.reader.generation:
        # (Not a failure, which may pass; nor if the mirror changed
        # meanwhile: the answer may be stale.)
        state.cache.put(key, answer)
    return _respond(request, answer, state, "mirror")


def _retry_later(message: str) -> Answer:
    answer = detail(503, message)
    return Answer(answer.status, answer.body, (*answer.headers, ("Retry-After", "5")))


def _public(route: ApiRoute) -> bool:
    """Whether the answer is the same for every caller."""
    res = route.resource
    return res is None or not (res.requires_auth or res.public_column)


async def _site(request: web.Request, site: SiteRoute, state: GatewayState) -> web.Response:
    if site.kind == "redirect-by-id":
        location = await _location_by_id(site, state.reader)
        answer = redirect(302, location) if location else state.not_found.answer(request.path)
        return _respond(request, answer, state, "mirror")
    # A page or download only the upstream serves (for now).
    if not state.upstream:
        answer = Answer(
            503,
            b"This gateway has no upstream; pages and downloads are not mirrored yet.\n",
            (("Content-Type", "text/plain; charset=utf-8"),),
        )
        return _respond(request, answer, state, "mirror")
    target = state.upstream + request.rel_url.raw_path_qs
    status = 302 if request.method in READ_METHODS else 307
    return _respond(request, redirect(status, target), state, "mirror")


async def _location_by_id(site: SiteRoute, reader: Reader) -> str | None:
    """Where Patchwork's legacy ``/patch/<id>/...`` URLs redirect."""
    assert site.resource is not None and site.obj_id is not None
    if site.resource == "comments":
        for table, parent_table, key in (
            ("patch_comments", "patches", "patch"),
            ("cover_comments", "covers", "cover"),
        ):
            comment = reader.docs([(table, site.obj_id)]).get((table, site.obj_id))
            if comment is None or comment.get(key) is None:
                continue
            parent = reader.docs([(parent_table, comment[key])]).get((parent_table, comment[key]))
            if parent and parent.get("web_url"):
                return f"{parent['web_url']}#{site.obj_id}"
        return None
    doc = reader.docs([(site.resource, site.obj_id)]).get((site.resource, site.obj_id))
    if doc is None:
        return None
    if site.suffix == "web":
        return doc.get("web_url")
    mbox = doc.get("mbox")
    if site.suffix == "raw" and mbox and mbox.endswith("/mbox/"):
        return mbox[: -len("mbox/")] + "raw/"
    return mbox


def create_app(
    config: Config, reader: Reader, *, demo: bool = False, control: Control | None = None
) -> web.Application:
    """The gateway; ``control`` is the sync worker's control file, if any."""
    limits.quiet_protocol_errors()
    app = web.Application(client_max_size=limits.MAX_BODY)
    state = GatewayState(config, reader, demo=demo, control=control)
    app[STATE] = state

    async def startup(app: web.Application) -> None:
        state.load_404()

    async def cleanup(app: web.Application) -> None:
        if state.proxy is not None:
            await state.proxy.close()

    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    # The gateway's own endpoints, beside (never among) Patchwork's paths.
    mode = "demo" if demo else "mirror"
    app.router.add_get("/_gateway/status", status_handler(state.sync, state.upstream, mode))
    app.router.add_post("/_gateway/webhook", webhook_handler(config.sync.webhook_secret, control))
    app.router.add_route("*", "/{tail:.*}", handle)
    return app
