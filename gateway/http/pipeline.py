"""The steps every request to a Patchwork path takes, in order, on one screen.

1. its context: the Host's origin, what the client accepts, its
   credentials (gateway.http.context), made once;
2. the Host: only the names the gateway serves (Django's ``ALLOWED_HOSTS``);
3. the anonymous cache: an anonymous JSON read answered from the cache of
   answers at once;
4. routing: which Patchwork URL the path is (gateway.api.routing);
5. the bounds: what is beyond one refused before any work
   (gateway.http.limits);
6. who answers: the site, upstream or the mirror (gateway.http.app);

all of it timed and counted for /metrics.  The steps are plain functions
that one handler runs in turn: as aiohttp middlewares, each would add a
coroutine and a wrapper to every request (measured: a cached answer lost
a sixth of its rate), and aiohttp a middleware of its own.  The gateway's
own endpoints take the Host step alone (:func:`guarded`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import perf_counter

from aiohttp import web

from gateway.api.endpoints import allowed
from gateway.api.routing import UNMATCHED, api_template, resolve_api, resolve_site, site_template
from gateway.http import limits
from gateway.http.context import LABEL, RequestContext
from gateway.http.negotiation import Choice
from gateway.http.sending import deliver, send
from gateway.http.state import GatewayState, is_loopback
from gateway.responses import READ_METHODS, Reply
from gateway.upstream.identity import credentials

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Answering = Callable[[RequestContext, GatewayState], Awaitable[web.StreamResponse]]


def _bad_host() -> web.Response:
    return web.Response(status=400, text="Bad Request: invalid Host header\n")


class Pipeline:
    """Runs the steps; ``answering`` is the last (gateway.http.app)."""

    def __init__(self, state: GatewayState, answering: Answering) -> None:
        self.state = state
        self.answering = answering
        self.counts = state.counts
        self.clients = state.clients
        #: Whether the access log reads the route template off the request.
        self.logged = state.settings.server.access_log

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Every step, in order, then the count (gateway.ops.metrics)."""
        started = perf_counter()
        ctx = None
        try:
            ctx = self.context(request)
            # (Each step answers, or passes with None: never ``or``, which
            # would ask aiohttp's Response for its truth, a call each time.)
            response: web.StreamResponse | None = self.bad_host(ctx)
            if response is None:
                response = self.cached(ctx)
            if response is None:
                response = await self.routed(ctx)
        except Exception as exc:  # (aiohttp answers it: a 413 from read(), or a 500)
            status = exc.status if isinstance(exc, web.HTTPException) else 500
            self.count(request, UNMATCHED if ctx is None else ctx.label, status, started)
            raise
        self.count(request, ctx.label, response.status, started)
        return response

    def count(self, request: web.Request, label: str, status: int, started: float) -> None:
        """The request, by route template, method and status, with its time."""
        self.counts.request(label, request.method, status, perf_counter() - started)
        if self.logged:
            request[LABEL] = label

    def context(self, request: web.Request) -> RequestContext:
        """1. What the request is (``origin`` empty: a Host not served)."""
        verdicts = self.state.judge(request)
        return RequestContext(
            request,
            verdicts.origin,
            request.method in READ_METHODS,
            verdicts.choice,
            verdicts.gzip,
            credentials(request),
            self.clients,
        )

    def bad_host(self, ctx: RequestContext) -> web.Response | None:
        """2. A Host the gateway does not serve: a 400, as Django's."""
        return None if ctx.origin else _bad_host()

    def cached(self, ctx: RequestContext) -> web.Response | None:
        """3. An anonymous JSON read answered from the cache of answers."""
        if ctx.read and ctx.choice is Choice.JSON and ctx.credentials is None:
            key = ctx.key()
            prepared = self.state.cache.get(key)
            if prepared is not None:
                ctx.label = prepared.route
                return send(ctx, prepared, key, self.state)
        return None

    async def routed(self, ctx: RequestContext) -> web.StreamResponse:
        """4, 5, 6: routed, within bounds, answered."""
        self.route(ctx)
        return self.refused(ctx) or await self.answering(ctx, self.state)

    def route(self, ctx: RequestContext) -> None:
        """4. Which Patchwork URL the path is; the mirror's generation as
        the request began (an answer built from an older one is not kept)."""
        path = ctx.request.path
        ctx.generation = self.state.reader.generation
        ctx.route = resolve_api(path) if path.startswith("/api/") else None
        if ctx.route is not None:
            ctx.label = api_template(ctx.route)
        else:
            ctx.site = resolve_site(path)
            if ctx.site is not None:
                ctx.label = site_template(ctx.site)

    def refused(self, ctx: RequestContext) -> web.Response | None:
        """5. Beyond a bound: a clear 4xx before any work.  (A cached
        answer passed this before: same method class, Host and URL.)"""
        refusal = limits.check(ctx.request, allowed(ctx.route) if ctx.route else None)
        return None if refusal is None else deliver(ctx, Reply.mirror(refusal), self.state)


def guarded(state: GatewayState, handler: Handler, loopback: bool = False) -> Handler:
    """``handler`` (one of the gateway's own) behind the Host step;
    ``loopback``: also for localhost, 127.0.0.1 and [::1], whatever names
    are allowed (health probes on the machine itself)."""

    async def checked(request: web.Request) -> web.StreamResponse:
        if state.origin(request) is None and not (loopback and is_loopback(request)):
            return _bad_host()
        return await handler(request)

    return checked
