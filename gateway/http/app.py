"""The aiohttp application: dispatch, caching, and what goes upstream.

GET and HEAD requests for the API are answered from the mirror (and
cached until the mirror changes), for callers with credentials once
upstream has accepted them (gateway.upstream.identity); what only upstream can
answer for a caller, and every write, is forwarded with the caller's own
credentials, and a write's effects are read back (gateway.upstream.readback).
Every answer leaves through gateway.http.delivery (validators, caching
headers, compression).  Downloads (mboxes, raw diffs, see
gateway.site.downloads) and the legacy by-id redirects are answered from the
mirror; site pages, and what the mirror cannot build, are redirected to
the upstream.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from gateway.api import browsable, openapi
from gateway.api import endpoints as api
from gateway.api.routing import (
    ROUTE,
    UNMATCHED,
    ApiRoute,
    SiteRoute,
    api_template,
    resolve_api,
    resolve_site,
    resolves,
    site_template,
)
from gateway.http import limits
from gateway.http.cache import Key, ResponseCache
from gateway.http.delivery import Delivery, Prepared
from gateway.http.negotiation import Choice, negotiate
from gateway.http.responses import Answer, NotFoundPage, detail, escape_uri_path, redirect
from gateway.ops import metrics
from gateway.ops.status import SYNCED_HEADER, SyncStatus, health_handlers, status_handler
from gateway.ops.webhooks import webhook_handler
from gateway.settings import LOOPBACK, GatewaySettings
from gateway.site.downloads import Downloads, Missing
from gateway.site.pages import Pages
from gateway.upstream import readback
from gateway.upstream.clients import ClientAddresses, PerClient, client_key, in_networks
from gateway.upstream.identity import (
    ANONYMOUS,
    THROTTLED,
    UNKNOWN,
    Caller,
    Identities,
    credentials,
    has_credentials,
)
from gateway.upstream.proxy import Proxy
from mirror.control import Control
from mirror.reader import QueryTooSlow, Reader, ReaderBusy
from mirror.resources import RESOURCES
from mirror.store import REFUSED
from mirror.versions import has_version

log = logging.getLogger(__name__)

READ_METHODS = ("GET", "HEAD")
WRITES = frozenset(("POST", "PUT", "PATCH", "DELETE"))
#: Host headers and Accept/format pairs whose verdicts are remembered, and
#: the longest remembered (longer ones are judged anew each time): at most
#: 256 x 2 x 300 characters, whatever clients send.
_REMEMBERED = 256
_REMEMBERED_CHARS = 300
#: A ``.`` or ``..`` path segment (``%2e`` decoded): upstream would resolve
#: it to a path outside /api/ the gateway never meant to forward.
_DOT_SEGMENT = re.compile(r"(^|/)\.{1,2}(/|$)")
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")

STATE: web.AppKey[GatewayState] = web.AppKey("state")
Handler = Callable[[web.Request], Awaitable[web.Response]]


class GatewayState:
    """Everything the handler needs, built at start-up."""

    def __init__(
        self,
        settings: GatewaySettings,
        reader: Reader,
        *,
        demo: bool = False,
        control: Control | None = None,
    ) -> None:
        self.settings = settings
        self.reader = reader
        self.control = control
        self.sync = SyncStatus(control, reader)
        self.upstream = settings.upstream
        #: What this process counted for /metrics (gateway.ops.metrics).
        self.counts = metrics.Counts()
        self.proxy = (
            Proxy(
                self.upstream, timeout=settings.upstream_timeout, record=self.counts.upstream_call
            )
            if self.upstream
            else None
        )
        self.identities = Identities(self.proxy, reader) if self.proxy else None
        self.readback = (
            readback.ReadBack(
                settings.mirror, self.upstream, settings.token, settings.upstream_timeout
            )
            if self.upstream
            else None
        )
        self.cache = ResponseCache(settings.server.cache_bytes)
        self.clients = ClientAddresses(settings.server.trusted_proxies)
        #: Downloads fetching what the mirror lacks, per client at once.
        self.fetching = PerClient(2)
        self.not_found = NotFoundPage()
        #: Resources the sync identity may not list (people, users when it
        #: is anonymous): the mirror cannot answer them for anyone.
        self.unmirrored: frozenset[str] = frozenset()
        mode_header = (
            "demo mirror built from a recorded instance (no upstream configured)"
            if demo
            else "mirror"
        )
        self.delivery = Delivery(settings.server.cache_max_age, mode_header)
        self.downloads = Downloads(reader)
        self.pages = Pages(reader)
        self.origins: dict[tuple[str, str], str | None] = {}
        self.choices: dict[tuple[str | None, str | None], Choice] = {}
        reader.on_change(self._changed)

    def _changed(self) -> None:
        self.cache.clear()
        self.load_meta()  # the first sync may just have learnt them

    def load_meta(self) -> None:
        """What the sync learnt: upstream's 404 page, lists it may not see."""
        raw = self.reader.meta("upstream.404")
        if raw:
            before, after = orjson.loads(raw)
            self.not_found = NotFoundPage((before, after))
        refused = self.reader.meta(REFUSED)
        self.unmirrored = frozenset(orjson.loads(refused)) if refused else frozenset()


def _origin(request: web.Request, state: GatewayState) -> str | None:
    """The origin URLs point at, or ``None`` for a Host we do not serve."""
    host = request.headers.get("Host", "")
    key = (request.scheme, host)
    if key in state.origins:
        return state.origins[key]
    origin = _origin_of(host, request.scheme, state)
    if len(state.origins) < _REMEMBERED and len(host) <= _REMEMBERED_CHARS:
        state.origins[key] = origin  # (bounded: Host is the client's)
    return origin


def _origin_of(host: str, scheme: str, state: GatewayState) -> str | None:
    if len(host) > limits.MAX_HOST or not _HOST.match(host):
        return None
    allowed = state.settings.server.allowed_hosts
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if allowed and name.strip("[]").lower() not in allowed:
        return None
    if state.settings.server.public_url:
        return state.settings.server.public_url
    return f"{scheme}://{host}"


def _host_checked(state: GatewayState, handle: Handler, loopback: bool) -> Handler:
    """``handle`` for the Host names the API answers (``loopback``: and for
    localhost, 127.0.0.1 and [::1], whatever the configuration)."""

    async def checked(request: web.Request) -> web.Response:
        if _origin(request, state) is None and not (loopback and _is_loopback(request)):
            return web.Response(status=400, text="Bad Request: invalid Host header\n")
        return await handle(request)

    return checked


def _is_loopback(request: web.Request) -> bool:
    host = request.headers.get("Host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name.strip("[]").lower() in LOOPBACK


def _may_see_details(request: web.Request, state: GatewayState) -> bool:
    """Whether the request may see every count (``[server] status_details``)."""
    details = state.settings.server.status_details
    if isinstance(details, bool):
        return details
    return in_networks(state.clients.address(request), details)


def _negotiate(request: web.Request, state: GatewayState) -> Choice:
    """What to answer with (see gateway.http.negotiation), remembered per header."""
    fmt = None
    if "format" in request.rel_url.raw_query_string:  # (parse the query only then)
        formats = request.query.getall("format", [])
        fmt = formats[-1] if formats else None
    key = (fmt, request.headers.get("Accept"))
    choice = state.choices.get(key)
    if choice is None:
        choice = negotiate(*key)
        size = len(key[0] or "") + len(key[1] or "")
        if len(state.choices) < _REMEMBERED and size <= _REMEMBERED_CHARS:
            state.choices[key] = choice
    return choice


def _respond(
    request: web.Request, answer: Answer, state: GatewayState, source: str
) -> web.Response:
    """Deliver an answer made for this request alone."""
    private = has_credentials(request)
    return _deliver(request, state.delivery.prepare(answer, source, private), state, private)


def _deliver(
    request: web.Request,
    prepared: Prepared,
    state: GatewayState,
    private: bool,
    key: Key | None = None,
) -> web.Response:
    """Send a prepared answer (see gateway.http.delivery); ``key``: where it is
    cached, to account for its gzip bytes once they exist."""
    synced = state.sync.header()
    had_gzip = prepared.gzipped is not None
    response = state.delivery.send(
        request, prepared, private, {SYNCED_HEADER: synced} if synced else None
    )
    if key is not None and not had_gzip and prepared.gzipped is not None:
        state.cache.put(key, prepared)
    return response


def _slash_or_404(path: str, raw_query: str, state: GatewayState) -> Answer:
    if not path.endswith("/") and resolves(path + "/"):
        location = escape_uri_path(path) + "/"
        if location.startswith("//"):
            location = "/%2F" + location[2:]
        if raw_query:
            location += "?" + raw_query
        return redirect(301, location)
    return state.not_found.answer(path)


def handler(state: GatewayState) -> Handler:
    """The request handler: :func:`answer`, counted for /metrics."""
    counts = state.counts

    async def handle(request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            response = await answer(request, state)
        except Exception as exc:  # (aiohttp answers it: a 413 from read(), or a 500)
            status = exc.status if isinstance(exc, web.HTTPException) else 500
            seconds = time.perf_counter() - started
            counts.request(request.get(ROUTE, UNMATCHED), request.method, status, seconds)
            raise
        seconds = time.perf_counter() - started
        counts.request(request.get(ROUTE, UNMATCHED), request.method, response.status, seconds)
        return response

    return handle


async def answer(request: web.Request, state: GatewayState) -> web.Response:
    """A request's whole path, step by step.

    Host, cache (anonymous reads), bounds, site paths, negotiation, who is
    asking, then upstream (writes, what the mirror cannot answer for this
    caller) or the mirror.
    """
    origin = _origin(request, state)
    if origin is None:
        return web.Response(status=400, text="Bad Request: invalid Host header\n")
    read = request.method in READ_METHODS
    choice = _negotiate(request, state)
    signed = has_credentials(request)
    key = (origin, request.rel_url.raw_path_qs)
    if read and choice is Choice.JSON and not signed:
        # Anonymous JSON reads are answered from the cache at once.
        cached = state.cache.get(key)
        if cached is not None:
            request[ROUTE] = cached.route
            return _deliver(request, cached, state, False, key)

    path = request.path
    route = resolve_api(path) if path.startswith("/api/") else None
    if route is not None:
        request[ROUTE] = api_template(route)
    # (A cached answer passed this before: same method class, Host and URL.)
    refusal = limits.check(request, api.allowed(route) if route else None)
    if refusal is not None:
        return _respond(request, refusal, state, "mirror")
    if route is None:
        return await _not_api(request, state, origin, signed, read)
    if read and choice is Choice.NO_SUCH_FORMAT:
        return _respond(request, detail(404, "Not found.", api.allowed(route)), state, "mirror")
    if read and choice is Choice.NOT_ACCEPTABLE:
        message = "Could not satisfy the request Accept header."
        return _respond(request, detail(406, message, api.allowed(route)), state, "mirror")

    if not read:  # every write goes upstream, as sent, whoever asks
        return await _upstream(request, route, state, origin, read)
    caller = await _who(request, state, route) if signed else ANONYMOUS
    if caller.authenticated and route.resource and route.resource.name in state.unmirrored:
        return await _upstream(request, route, state, origin, read)
    if caller.refusal is not None:
        answer = caller.refusal
        allowed = (*answer.headers, ("Allow", api.allowed(route)), ("Vary", "Accept"))
        return _respond(request, Answer(answer.status, answer.body, allowed), state, "upstream")
    if caller is THROTTLED:
        return _respond(request, _retry_later(_THROTTLED), state, "mirror")
    if caller is UNKNOWN or _needs_upstream(route, caller):
        return await _upstream(request, route, state, origin, read)
    return await _mirror(request, route, state, origin, caller, page=choice is Choice.HTML)


_THROTTLED = "Too many new credentials to check at once; retry in a few seconds."


async def _who(request: web.Request, state: GatewayState, route: ApiRoute) -> Caller:
    """The caller, as upstream knows them (see gateway.upstream.identity)."""
    creds = credentials(request)
    if creds is None:
        return ANONYMOUS
    if state.identities is None:
        return UNKNOWN  # no upstream: only upstream could tell
    sensitive = route.resource is not None and route.resource.requires_auth
    client = state.clients.address(request)
    return await state.identities.who(creds, client, sensitive)


def _needs_upstream(route: ApiRoute, caller: Caller) -> bool:
    """What the mirror cannot answer for this caller with certainty.

    * Bundles: the mirror holds the public ones and those of the sync
      identity; a caller's own private bundles may be missing.
    * A user's own detail from 1.2: only that user sees its ``settings``,
      and a token says whose it is only once upstream has said so.
    """
    res = route.resource
    if res is None or not caller.authenticated:
        return False
    if res.public_column:
        return True
    if res.name == "users" and route.kind == "detail" and has_version(route.version, "1.2"):
        return caller.user_id is None or route.key == str(caller.user_id)
    return False


async def _mirror(
    request: web.Request,
    route: ApiRoute,
    state: GatewayState,
    origin: str,
    caller: Caller,
    page: bool = False,
) -> web.Response:
    """Answer from the mirror, through the cache of answers.

    An answer for an authenticated caller is the anonymous one, except
    for people and users, which only authenticated callers see: those
    are kept apart (and alike for every authenticated caller).
    ``page``: the browsable API's page of the answer (gateway.api.browsable).
    """
    res = route.resource
    key: Key = (origin, request.rel_url.raw_path_qs)
    private = has_credentials(request)
    if caller.authenticated and res is not None and res.requires_auth:
        key = (origin, request.rel_url.raw_path_qs + "\x00authenticated")
    if page:
        key = (origin, key[1] + "\x00page")
    if caller.authenticated or page:
        cached = state.cache.get(key)
        if cached is not None:
            return _deliver(request, cached, state, private, key)
    generation = state.reader.generation
    path, raw_query = request.path, request.rel_url.raw_query_string
    try:
        answer = await api.serve(
            route, request.query, raw_query, path, origin, state.reader, caller.authenticated
        )
    except QueryTooSlow:
        answer = detail(503, "This query takes too long; narrow it down.", api.allowed(route))
    except ReaderBusy:
        answer = _retry_later("Too many slow queries are waiting; retry in a few seconds.")
    except sqlite3.Error as exc:
        # A locked, damaged or vanished mirror: a clean answer to retry,
        # and one log line.
        log.warning("%s %s: the mirror cannot answer: %s", request.method, path, exc)
        answer = _retry_later("The mirror cannot answer right now; retry in a few seconds.")
    if page:
        title = "Api Root" if res is None else f"{res.model} {route.kind.title()}"
        answer = browsable.page(answer, request.method, request.rel_url.raw_path_qs, title)
    return _keep_and_deliver(request, answer, state, private, key, generation)


def _keep_and_deliver(
    request: web.Request,
    answer: Answer,
    state: GatewayState,
    private: bool,
    key: Key,
    generation: int,
    keep: bool = True,
) -> web.Response:
    """Deliver an answer built from the mirror, kept in the response cache
    unless it is a failure (which may pass) or the mirror changed while it
    was built (it may be stale)."""
    prepared = state.delivery.prepare(answer, "mirror", private)
    prepared.route = request.get(ROUTE, UNMATCHED)
    if keep and answer.status < 500 and generation == state.reader.generation:
        state.cache.put(key, prepared)
    return _deliver(request, prepared, state, private, key)


async def _upstream(
    request: web.Request, route: ApiRoute, state: GatewayState, origin: str, read: bool
) -> web.Response:
    """Forward to upstream: writes, the browsable API, what only it knows."""
    if state.proxy is None:
        if read and _public(route):
            return await _mirror(request, route, state, origin, ANONYMOUS)
        message = "This gateway has no upstream to forward this request to."
        return _respond(request, detail(503, message), state, "mirror")
    answer = await state.proxy.forward(request, origin, state.clients.address(request))
    creds = credentials(request)
    if creds is not None and state.identities is not None:
        if read and answer.status == 200 and route.resource is RESOURCES["users"]:
            state.identities.learn(creds, answer.body)  # whose token this is
        elif answer.status == 401 or (answer.status == 403 and b"Invalid" in answer.body):
            state.identities.forget(creds)  # revoked since it was checked
    if request.method in WRITES and 200 <= answer.status < 300 and state.readback is not None:
        await _read_back(request, route, state, answer)
    if answer.status >= 500 and read and _public(route):
        # Upstream failed on a read of public data (credentials passed its
        # authentication, else it answers 403 first), is down, or every
        # forwarding slot is taken: the mirror's JSON is the best answer left.
        if answer is not state.proxy.busy:
            log.warning("upstream answered %d; serving %s from the mirror", answer.status, route)
        return await _mirror(request, route, state, origin, ANONYMOUS)
    return _respond(request, answer, state, "upstream")


async def _read_back(
    request: web.Request, route: ApiRoute | None, state: GatewayState, answer: Answer
) -> None:
    """Before answering a write, refresh what it changed (gateway.upstream.readback)."""
    assert state.readback is not None
    if route is None:  # XML-RPC
        want, events = readback.xmlrpc_wanted(await request.read())
    else:
        want, events = readback.wanted(request.method, route, answer.body)
    if not want:
        return
    started = time.perf_counter()
    done = await state.readback.refresh(want, events)
    seconds = time.perf_counter() - started
    outcome = "skipped" if done is None else "done" if done else "failed"
    state.counts.upstream_call("readback", outcome, seconds)
    if done:
        state.reader.check_changes()  # drop the caches now, not at the next tick


async def _not_api(
    request: web.Request, state: GatewayState, origin: str, signed: bool, read: bool
) -> web.Response:
    """Site pages, downloads, XML-RPC, and API paths the mirror does not know."""
    path = request.path
    site = resolve_site(path)
    if site is not None:
        request[ROUTE] = site_template(site)
    if site is not None and site.kind != "forward":
        return await _site(request, site, state, origin)
    forwarded = site is not None or (path.startswith("/api/") and (signed or not read))
    if read and site is None and resolves(path + "/"):
        forwarded = False  # a slashless API path: the 301, whoever asks (b4 relies on it)
    if _DOT_SEGMENT.search(path):
        forwarded = False  # no Patchwork path has one: never let upstream resolve it
    if not forwarded:
        raw_query = request.rel_url.raw_query_string
        return _respond(request, _slash_or_404(path, raw_query, state), state, "mirror")
    # XML-RPC (pwclient's default backend), and endpoints of a newer
    # Patchwork the mirror does not hold (a project's webhooks): as they are.
    if state.proxy is None:
        message = "This gateway has no upstream to forward this request to."
        return _respond(request, detail(503, message), state, "mirror")
    answer = await state.proxy.forward(request, origin, state.clients.address(request))
    # XML-RPC answers faults (refused credentials among them) with a 200:
    # only a result, to a caller with credentials, changed anything.
    wrote = (
        request.method in WRITES
        and answer.status == 200
        and signed
        and readback.xmlrpc_succeeded(answer.body)
    )
    if site is not None and wrote and state.readback is not None:
        await _read_back(request, None, state, answer)
    return _respond(request, answer, state, "upstream")


def _retry_later(message: str) -> Answer:
    answer = detail(503, message)
    return Answer(answer.status, answer.body, (*answer.headers, ("Retry-After", "5")))


def _public(route: ApiRoute) -> bool:
    """Whether the answer is the same for every caller."""
    res = route.resource
    return res is None or not (res.requires_auth or res.public_column)


async def _site(
    request: web.Request, site: SiteRoute, state: GatewayState, origin: str
) -> web.Response:
    if site.kind == "redirect-by-id":
        location = await _location_by_id(site, state.reader)
        answer = redirect(302, location) if location else state.not_found.answer(request.path)
        return _respond(request, answer, state, "mirror")
    if site.kind in ("download", "page") and request.method in READ_METHODS:
        generation = state.reader.generation
        try:
            built = await _build_or_fetch(request, site, state, origin)
        except sqlite3.Error as exc:
            log.warning("%s: the mirror cannot answer: %s", request.path, exc)
            built = None
        identified = has_credentials(request)
        bundle = site.resource in ("bundles", "bundle")
        if built is None and bundle and not identified:
            # Anonymous callers never see a bundle that is not public.
            built = state.downloads.hidden_bundle(site.project or "", site.msgid or "")
        if built is None and bundle and site.kind == "download" and state.proxy is not None:
            # Perhaps the caller's own private bundle: only upstream knows.
            # Forwarded with the credentials, never redirected (clients drop
            # Authorization on a redirect to another origin).
            client = state.clients.address(request)
            answer = await state.proxy.forward(request, origin, client)
            return _respond(request, answer, state, "upstream")
        if built is not None:
            if built.status == 404 and not built.headers:
                built = state.not_found.answer(request.path)
            # The same for every caller: kept like an anonymous API answer.
            key = (origin, request.rel_url.raw_path_qs)
            return _keep_and_deliver(request, built, state, identified, key, generation)
    # A page only the upstream serves (logins, settings, administration),
    # or a download the mirror lacks a part of.
    if not state.upstream:
        answer = Answer(
            503,
            b"This gateway has no upstream: this page is served by Patchwork itself "
            b"(logins, settings, administration), not built from the mirror.\n",
            (("Content-Type", "text/plain; charset=utf-8"),),
        )
        return _respond(request, answer, state, "mirror")
    target = state.upstream + request.rel_url.raw_path_qs
    status = 302 if request.method in READ_METHODS else 307
    return _respond(request, redirect(status, target), state, "mirror")


#: Details one download may read upstream at once, when the mirror lacks them.
MAX_FETCHED = 64


async def _build_or_fetch(
    request: web.Request, site: SiteRoute, state: GatewayState, origin: str
) -> Answer | None:
    """A download or page from the mirror.  What it lacks (a detail never
    fetched) is read upstream into the mirror once, then it is built again;
    ``None`` when it still cannot be (it is then sent upstream)."""
    try:
        return await _build(request, site, state, origin)
    except Missing as missing:
        if state.readback is None:
            return None
        client = client_key(state.clients.address(request))
        if not state.fetching.enter(client):
            return None  # this client has enough under way
        try:
            started = time.perf_counter()
            done = await state.readback.details(missing.refs[:MAX_FETCHED])
            outcome = "skipped" if done is None else "done" if done else "failed"
            state.counts.upstream_call("readback", outcome, time.perf_counter() - started)
        finally:
            state.fetching.leave(client)
        if not done:
            return None
        state.reader.check_changes()  # (the caches hold what was missing)
    try:
        return await _build(request, site, state, origin)
    except Missing:
        return None


async def _build(
    request: web.Request, site: SiteRoute, state: GatewayState, origin: str
) -> Answer | None:
    """A download or page from the mirror (``None``: only upstream may
    answer; :class:`Missing`: the mirror lacks a part of it)."""
    if site.kind == "download":
        series = request.query.getall("series", [""])[-1] if site.suffix == "mbox" else None
        return state.downloads.answer(site, series)
    if site.resource == "list":
        return await state.pages.patch_list(site.project or "", request.query, origin)
    if site.resource == "index":
        return state.pages.landing()
    if site.resource == "project":
        return state.pages.project(site.project or "")
    if site.resource == "bundle":
        bundle = state.downloads.public_bundle(site.project or "", site.msgid or "")
        if bundle is None:
            return None  # not public: perhaps the caller's own, only upstream knows
        patches = list(bundle.get("patches") or [])
        order = state.downloads.bundle_orders.order(bundle["id"], patches)
        return state.pages.bundle(site.project or "", site.msgid or "", order)
    return state.pages.submission(site.project or "", site.msgid or "", site.resource == "patches")


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
    settings: GatewaySettings,
    reader: Reader,
    *,
    demo: bool = False,
    control: Control | None = None,
) -> web.Application:
    """The gateway; ``control`` is the sync worker's control file, if any."""
    limits.quiet_protocol_errors()
    app = web.Application(client_max_size=limits.MAX_BODY)
    state = GatewayState(settings, reader, demo=demo, control=control)
    app[STATE] = state

    publisher = metrics.Publisher(state.counts, state.cache)
    publishing: list[asyncio.Task[None]] = []

    async def startup(app: web.Application) -> None:
        state.load_meta()
        publishing.append(asyncio.create_task(metrics.publish_every(publisher)))

    async def cleanup(app: web.Application) -> None:
        for task in publishing:
            task.cancel()
        if state.proxy is not None:
            await state.proxy.close()
        if state.readback is not None:
            await state.readback.close()

    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    # The gateway's own endpoints, beside (never among) Patchwork's paths,
    # for the same Host names as the API (health also for loopback names,
    # for probes on the machine itself).
    mode = "demo" if demo else "mirror"

    def add(method: str, path: str, handle: Handler, loopback: bool = False) -> None:
        app.router.add_route(method, path, _host_checked(state, handle, loopback))

    def details(request: web.Request) -> bool:
        return _may_see_details(request, state)

    add("GET", "/_gateway/status", status_handler(state.sync, state.upstream, mode, details))
    live, ready = health_handlers(state.sync, settings.server.ready_max_lag, demo)
    add("GET", "/_gateway/health/live", live, loopback=True)
    add("GET", "/_gateway/health/ready", ready, loopback=True)
    # Prometheus (gateway.ops.metrics): every process's counts.
    add("GET", "/metrics", metrics.metrics_handler(publisher, state.sync, reader.path, details))
    add("POST", "/_gateway/webhook", webhook_handler(settings.webhook_secret, control))
    # The API's description (Patchwork 4.0 serves one at /api/docs too).
    add("GET", "/api/docs", openapi.page_handler)
    add("GET", "/api/docs/", openapi.page_handler)
    add("GET", "/api/docs/openapi.json", openapi.json_handler)
    app.router.add_route("*", "/{tail:.*}", handler(state))
    return app
