"""The steps every request takes before one answers it, as aiohttp middlewares.

In order (gateway.http.app installs them so):

1. :func:`metered`: how long it took and how it ended, for /metrics;
2. :func:`host_checked`: only the Host names the gateway serves (Django's
   ``ALLOWED_HOSTS``); the request's context is made here;
3. :func:`anonymous_cache`: an anonymous JSON read answered from the cache
   of answers at once;
4. :func:`routed`: which Patchwork URL the path is;
5. :func:`bounded`: what is beyond a bound (gateway.http.limits) refused.

Steps 3 to 5 concern Patchwork's paths only; the gateway's own endpoints
(/metrics, /_gateway/..., /api/docs/) pass through.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.api.endpoints import allowed
from gateway.api.routing import (
    UNMATCHED,
    api_template,
    resolve_api,
    resolve_site,
    site_template,
)
from gateway.http import limits
from gateway.http.context import CONTEXT, RequestContext
from gateway.http.negotiation import Choice
from gateway.http.sending import deliver, send
from gateway.http.state import GatewayState, is_loopback
from gateway.responses import READ_METHODS, Reply
from gateway.upstream.identity import credentials

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The route of Patchwork's paths (every path the gateway's own do not take).
PATCHWORK = "patchwork"
#: Routes a loopback Host reaches whatever the allowed names (health probes).
LOOPBACK_ROUTES = frozenset(("health.live", "health.ready"))


def _bad_host() -> web.Response:
    return web.Response(status=400, text="Bad Request: invalid Host header\n")


def metered(state: GatewayState) -> Middleware:
    """Count every request to Patchwork's paths by route template, method
    and status, with its time (gateway.ops.metrics)."""
    counts = state.counts

    @web.middleware
    async def metered(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except Exception as exc:  # (aiohttp answers it: a 413 from read(), or a 500)
            status = exc.status if isinstance(exc, web.HTTPException) else 500
            _count(request, status, started)
            raise
        _count(request, response.status, started)
        return response

    def _count(request: web.Request, status: int, started: float) -> None:
        ctx = request.get(CONTEXT)
        if ctx is None or ctx.patchwork:
            label = UNMATCHED if ctx is None else ctx.label
            counts.request(label, request.method, status, time.perf_counter() - started)

    return metered


def host_checked(state: GatewayState) -> Middleware:
    """Answer only the Host names the API answers (health also loopback
    names, for probes on the machine), and make the request's context."""

    @web.middleware
    async def host_checked(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = state.origin(request)
        route_name = request.match_info.route.name
        ctx = _context(request, origin or "", state)
        ctx.patchwork = route_name == PATCHWORK
        request[CONTEXT] = ctx
        if origin is None and not (route_name in LOOPBACK_ROUTES and is_loopback(request)):
            return _bad_host()
        return await handler(request)

    return host_checked


def _context(request: web.Request, origin: str, state: GatewayState) -> RequestContext:
    return RequestContext(
        request,
        origin,
        request.method in READ_METHODS,
        state.choice(request),
        credentials(request),
        state.clients,
    )


def anonymous_cache(state: GatewayState) -> Middleware:
    """Anonymous JSON reads answered from the cache of answers at once."""
    cache = state.cache

    @web.middleware
    async def anonymous_cache(request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = request[CONTEXT]
        if ctx.patchwork and ctx.read and ctx.choice is Choice.JSON and ctx.credentials is None:
            key = ctx.key()
            cached = cache.get(key)
            if cached is not None:
                ctx.label = cached.route
                return send(ctx, cached, key, state)
        return await handler(request)

    return anonymous_cache


def routed(state: GatewayState) -> Middleware:
    """Which Patchwork URL the path is: an API route, a site route, or
    neither (gateway.api.routing); the mirror's generation as it began."""

    @web.middleware
    async def routed(request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = request[CONTEXT]
        if ctx.patchwork:
            path = request.path
            ctx.generation = state.reader.generation
            ctx.route = resolve_api(path) if path.startswith("/api/") else None
            if ctx.route is not None:
                ctx.label = api_template(ctx.route)
            else:
                ctx.site = resolve_site(path)
                if ctx.site is not None:
                    ctx.label = site_template(ctx.site)
        return await handler(request)

    return routed


def bounded(state: GatewayState) -> Middleware:
    """What is beyond a bound gets a clear 4xx before any work."""

    @web.middleware
    async def bounded(request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = request[CONTEXT]
        if ctx.patchwork:
            # (A cached answer passed this before: same method class, Host and URL.)
            refusal = limits.check(request, allowed(ctx.route) if ctx.route else None)
            if refusal is not None:
                return deliver(ctx, Reply.mirror(refusal), state)
        return await handler(request)

    return bounded


def pipeline(state: GatewayState) -> list[Middleware]:
    """The middlewares, in the order a request meets them."""
    return [
        metered(state),
        host_checked(state),
        anonymous_cache(state),
        routed(state),
        bounded(state),
    ]
