"""The aiohttp application, and the one step that says who answers.

A request to a Patchwork path goes down the pipeline's steps
(gateway.http.pipeline: its context, the Host, the anonymous cache,
routing, the bounds, all of it timed), then :func:`answering` says who
answers it:

* the site (gateway.site): downloads, pages, legacy redirects;
* upstream (gateway.upstream): writes, what only upstream may answer for
  this caller, XML-RPC, endpoints of a newer Patchwork;
* the mirror (gateway.api): every other API read, through the cache of
  answers, for callers with credentials once upstream has accepted them.

Every answer leaves through gateway.http.sending (validators, caching
headers, compression, the cache of answers).  The server's lifecycles
(the reader, upstream's clients, the metrics publisher) are the
application's ``cleanup_ctx``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.api import endpoints, openapi
from gateway.api.routing import ApiRoute, resolves
from gateway.feed.endpoint import Feed
from gateway.feed.snapshot import Snapshots
from gateway.http import limits
from gateway.http.context import Cached, RequestContext
from gateway.http.negotiation import Choice
from gateway.http.pipeline import Pipeline, guarded
from gateway.http.sending import deliver
from gateway.http.state import GatewayState
from gateway.ops import collector, metrics
from gateway.ops.endpoints import PREFIX, ops_app
from gateway.responses import (
    Answer,
    Reply,
    View,
    detail,
    escape_uri_path,
    redirect,
    retry_later,
)
from gateway.settings import GatewaySettings
from gateway.upstream.identity import ANONYMOUS, THROTTLED, UNKNOWN
from mirror.control import Control
from mirror.dependencies import recording
from mirror.reader import Reader
from mirror.versions import has_version

log = logging.getLogger(__name__)

#: A ``.`` or ``..`` path segment (``%2e`` decoded): upstream would resolve
#: it to a path outside /api/ the gateway never meant to forward.
_DOT_SEGMENT = re.compile(r"(^|/)\.{1,2}(/|$)")
_NO_UPSTREAM = "This gateway has no upstream to forward this request to."
_THROTTLED = "Too many new credentials to check at once; retry in a few seconds."

STATE: web.AppKey[GatewayState] = web.AppKey("state")
FEED: web.AppKey[Feed] = web.AppKey("feed")


async def answering(ctx: RequestContext, state: GatewayState) -> web.Response:
    """Who answers a Patchwork path: the site, upstream or the mirror (what
    it read of the mirror recorded: a change reaching it drops it)."""
    with recording() as deps:
        reply = await _answer(ctx, state)
    return deliver(ctx, reply, state, deps)


async def _answer(ctx: RequestContext, state: GatewayState) -> Reply | Cached:
    route = ctx.route
    if route is None:
        if ctx.site is not None and ctx.site.kind != "forward":
            return await state.site.answer(ctx, state.upstream)
        return await _not_an_api_path(ctx, state)
    if ctx.read and ctx.choice is Choice.NO_SUCH_FORMAT:
        return Reply.mirror(detail(404, "Not found.", endpoints.allowed(route)))
    if ctx.read and ctx.choice is Choice.NOT_ACCEPTABLE:
        message = "Could not satisfy the request Accept header."
        return Reply.mirror(detail(406, message, endpoints.allowed(route)))
    if not ctx.read:
        return await _forwarded(ctx, state)  # every write goes upstream, as sent
    if ctx.private:
        if state.upstream is None:
            return await _forwarded_or_mirror(ctx, state)  # only upstream could tell
        ctx.caller = await state.upstream.who(ctx)
        if ctx.caller.refusal is not None:
            return Reply.upstream(_refusal(ctx.caller.refusal, route))
        if ctx.caller is THROTTLED:
            return Reply.mirror(retry_later(_THROTTLED))
        if ctx.caller is UNKNOWN or _only_upstream_knows(ctx, state):
            return await _forwarded_or_mirror(ctx, state)
    return await _from_mirror(ctx, state)


def _refusal(refusal: Answer, route: ApiRoute) -> Answer:
    """Upstream's refusal of the credentials, on any path (authentication
    comes before any view upstream), with this view's headers."""
    headers = (*refusal.headers, ("Allow", endpoints.allowed(route)), ("Vary", "Accept"))
    return Answer(refusal.status, refusal.body, headers)


def _only_upstream_knows(ctx: RequestContext, state: GatewayState) -> bool:
    """What the mirror cannot answer for this (authenticated) caller.

    * People and users when the sync identity may not list them.
    * Bundles: the mirror holds the public ones and those of the sync
      identity; a caller's own private bundles may be missing.
    * A user's own detail from 1.2: only that user sees its ``settings``,
      and a token says whose it is only once upstream has said so.
    """
    route, caller = ctx.route, ctx.caller
    res = route.resource if route is not None else None
    if res is None or not caller.authenticated:
        return False
    if res.name in state.unmirrored or res.public_column:
        return True
    own_detail = res.name == "users" and route is not None and route.kind == "detail"
    if own_detail and route is not None and has_version(route.version, "1.2"):
        return caller.user_id is None or route.key == str(caller.user_id)
    return False


async def _from_mirror(ctx: RequestContext, state: GatewayState) -> Reply | Cached:
    """The API's answer from the mirror, through the cache of answers.

    An answer for an authenticated caller is the anonymous one, except for
    people and users, which only authenticated callers see: those are kept
    apart (and alike for every authenticated caller); the browsable API's
    pages apart too.
    """
    route = ctx.route
    assert route is not None
    res = route.resource
    authenticated = ctx.caller.authenticated
    page = ctx.choice is Choice.HTML
    view = View.PUBLIC
    if authenticated and res is not None and res.requires_auth:
        view = View.AUTHENTICATED
    if page:
        view = View(view | View.PAGE)
    if authenticated or page:  # (anonymous JSON reads were looked up before)
        cached = state.cache.get(ctx.key(view))
        if cached is not None:
            return Cached(cached, view)
    answer = await endpoints.from_mirror(
        route, ctx.request, ctx.origin, state.reader, authenticated, page
    )
    return Reply.mirror(answer, keep=True, view=view)


async def _forwarded(ctx: RequestContext, state: GatewayState) -> Reply:
    """Upstream's answer (a 503 when there is no upstream)."""
    if state.upstream is None:
        return Reply.mirror(detail(503, _NO_UPSTREAM))
    return Reply.upstream(await state.upstream.forward(ctx))


async def _forwarded_or_mirror(ctx: RequestContext, state: GatewayState) -> Reply | Cached:
    """Upstream's answer to a read; the mirror's anonymous one when upstream
    cannot give it (down, failing, every slot taken, or no upstream) and
    the data is the same for everyone: the best answer left."""
    reply = await _forwarded(ctx, state)
    route = ctx.route
    failed = reply.answer.status >= 500
    if failed and route is not None and _public(route):
        if state.upstream is not None and not state.upstream.busy(reply.answer):
            log.warning(
                "upstream answered %d; serving %s from the mirror", reply.answer.status, route
            )
        ctx.caller = ANONYMOUS
        return await _from_mirror(ctx, state)
    return reply


def _public(route: ApiRoute) -> bool:
    """Whether the answer is the same for every caller."""
    res = route.resource
    return res is None or not (res.requires_auth or res.public_column)


async def _not_an_api_path(ctx: RequestContext, state: GatewayState) -> Reply:
    """XML-RPC, API paths the mirror does not know, and what is no path at all."""
    request, path = ctx.request, ctx.request.path
    forwarded = ctx.site is not None or (path.startswith("/api/") and (ctx.private or not ctx.read))
    if ctx.read and ctx.site is None and resolves(path + "/"):
        forwarded = False  # a slashless API path: the 301, whoever asks (b4 relies on it)
    if _DOT_SEGMENT.search(path):
        forwarded = False  # no Patchwork path has one: never let upstream resolve it
    if forwarded:
        # XML-RPC (pwclient's `backend = xmlrpc`), and endpoints of a newer
        # Patchwork the mirror does not hold (a project's webhooks): as they are.
        return await _forwarded(ctx, state)
    if not path.endswith("/") and resolves(path + "/"):
        location = escape_uri_path(path) + "/"
        if location.startswith("//"):
            location = "/%2F" + location[2:]
        if request.rel_url.raw_query_string:
            location += "?" + request.rel_url.raw_query_string
        return Reply.mirror(redirect(301, location))
    return Reply.mirror(state.not_found.answer(path))


def create_app(
    settings: GatewaySettings,
    reader: Reader | None = None,
    *,
    demo: bool = False,
    control: Control | None = None,
) -> web.Application:
    """The gateway.  It opens and closes its own reader of the mirror unless
    given one (already open); ``control`` is the sync worker's control file."""
    owned = reader is None
    if reader is None:
        reader = Reader(settings.mirror, cache_bytes=settings.server.mirror_cache_bytes)
    state = GatewayState(settings, reader, demo=demo, control=control)
    app = web.Application(client_max_size=limits.MAX_BODY)
    app[STATE] = state
    publisher = metrics.Publisher(state.counts, state.cache)

    async def mirror_open(app: web.Application) -> AsyncIterator[None]:
        if owned:
            await reader.open(settings.server.refresh_interval)
        state.load_meta()
        yield
        if owned:
            await reader.close()

    async def upstream_clients(app: web.Application) -> AsyncIterator[None]:
        yield
        if state.upstream is not None:
            await state.upstream.close()

    async def publishing(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(metrics.publish_every(publisher))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def collecting(app: web.Application) -> AsyncIterator[None]:
        async with collector.collecting(state.counts.gc_pause):
            yield

    app.cleanup_ctx.extend((mirror_open, upstream_clients, publishing, collecting))

    # The gateway's own endpoints, beside (never among) Patchwork's paths.
    feed = app[FEED] = Feed(state)
    app.on_shutdown.append(feed.close)
    details = state.may_see_details
    app.add_subapp(
        PREFIX,
        ops_app(
            state.sync,
            upstream=settings.upstream,
            demo=demo,
            details=details,
            ready_max_lag=settings.server.ready_max_lag,
            webhook_secret=settings.webhook_secret,
            control=control,
            guard=lambda handler, loopback: guarded(state, handler, loopback),
            changes=feed.handle,
            snapshot=Snapshots(
                settings.mirror, settings.server.snapshot_max_age, settings.server.replication_token
            ).handle,
        ),
    )
    # Prometheus (gateway.ops.metrics): every process's counts.
    scrape = metrics.metrics_handler(publisher, state.sync, reader.path, details)
    app.router.add_get("/metrics", guarded(state, scrape))
    # The API's description (Patchwork 4.0 serves one at /api/docs too).
    app.router.add_get("/api/docs", guarded(state, openapi.page_handler))
    app.router.add_get("/api/docs/", guarded(state, openapi.page_handler))
    app.router.add_get("/api/docs/openapi.json", guarded(state, openapi.json_handler))
    # Every other path is Patchwork's, down the pipeline.
    app.router.add_route("*", "/{tail:.*}", Pipeline(state, answering).handle)
    return app
