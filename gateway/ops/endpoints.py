"""The gateway's own endpoints under ``/_gateway/``: a sub-application.

``status`` (JSON), ``changes`` and ``snapshot`` (the change feed and
snapshots for replicas: gateway.feed),
``health/live`` and ``health/ready`` (for load balancers and probes), and
``webhook`` (Patchwork 4.0's signed deliveries).  They live beside,
never among, Patchwork's paths; the main gateway's Host rule applies to
them (health also answers loopback names:
gateway.http.pipeline.host_checked).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.ops.health import health_handlers
from gateway.ops.status import SyncStatus, status_handler
from gateway.ops.webhooks import webhook_handler
from mirror.control import Control

PREFIX = "/_gateway/"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def ops_app(
    sync: SyncStatus,
    *,
    upstream: str,
    demo: bool,
    details: Callable[[web.Request], bool],
    ready_max_lag: float,
    webhook_secret: str,
    control: Control | None,
    guard: Callable[[Handler, bool], Handler],
    changes: Handler,
    snapshot: Handler,
) -> web.Application:
    """The sub-application mounted at :data:`PREFIX`; ``details``: whether a
    request may see every count; ``guard(handler, loopback)``: the handler
    behind the Host rule (``loopback``: loopback names pass too).  (Not a
    middleware: one in a sub-application would put aiohttp's middleware
    machinery on every request of the gateway.)"""
    app = web.Application()
    mode = "demo" if demo else "mirror"
    app.router.add_get("/status", guard(status_handler(sync, upstream, mode, details), False))
    live, ready = health_handlers(sync, ready_max_lag, demo)
    app.router.add_get("/health/live", guard(live, True))
    app.router.add_get("/health/ready", guard(ready, True))
    app.router.add_post("/webhook", guard(webhook_handler(webhook_secret, control), False))
    app.router.add_get("/changes", guard(changes, False))
    app.router.add_get("/snapshot", guard(snapshot, False))
    return app
