"""The last step of every request: an answer leaves, and may be kept.

An answer built from the mirror is prepared once (validators, caching
headers: gateway.http.delivery) and, when the reply says so, kept in the
cache of answers, unless it is a failure (which may pass) or the mirror
changed while it was built (it may be stale).  Every answer carries when
the mirror last matched upstream.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.http.cache import Key
from gateway.http.context import Cached, RequestContext
from gateway.http.delivery import Prepared
from gateway.responses import Reply
from mirror.dependencies import Dep

if TYPE_CHECKING:
    from gateway.http.state import GatewayState


def deliver(
    ctx: RequestContext,
    reply: Reply | Cached,
    state: GatewayState,
    deps: Iterable[Dep] = (),
) -> web.Response:
    """Send ``reply`` to the request, keeping it when it says so, as built
    from ``deps`` (mirror.dependencies)."""
    if isinstance(reply, Cached):
        return send(ctx, reply.prepared, ctx.key(reply.view), state)
    prepared = state.delivery.prepare(reply.answer, reply.source, ctx.private)
    key = None
    if reply.keep and reply.answer.status < 500 and ctx.generation == state.reader.generation:
        prepared.route = ctx.label
        key = ctx.key(reply.view)
        state.cache.put(key, prepared, deps)
    return send(ctx, prepared, key, state)


def send(
    ctx: RequestContext, prepared: Prepared, key: Key | None, state: GatewayState
) -> web.Response:
    """Send a prepared answer: 304, gzip or plain (gateway.http.delivery);
    ``key``: where it is kept, to account for its gzip bytes once made."""
    had_gzip = prepared.gzipped is not None
    response = state.delivery.send(
        ctx.request, prepared, ctx.private, ctx.gzip, state.sync.headers()
    )
    if key is not None and not had_gzip and prepared.gzipped is not None:
        state.cache.put(key, prepared)
    return response
