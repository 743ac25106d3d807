"""The gateway's own endpoints under ``/_gateway/``: a sub-application.

``status`` (JSON), ``health/live`` and ``health/ready`` (for load
balancers and probes), and ``webhook`` (Patchwork 4.0's signed
deliveries).  They live beside, never among, Patchwork's paths; the main
application's middlewares apply to them too (the Host rule; health also
answers loopback names).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from gateway.ops.health import health_handlers
from gateway.ops.status import SyncStatus, status_handler
from gateway.ops.webhooks import webhook_handler
from mirror.control import Control

PREFIX = "/_gateway/"


def ops_app(
    sync: SyncStatus,
    *,
    upstream: str,
    demo: bool,
    details: Callable[[web.Request], bool],
    ready_max_lag: float,
    webhook_secret: str,
    control: Control | None,
) -> web.Application:
    """The sub-application mounted at :data:`PREFIX`; ``details``: whether a
    request may see every count."""
    app = web.Application()
    mode = "demo" if demo else "mirror"
    app.router.add_get("/status", status_handler(sync, upstream, mode, details), name="status")
    live, ready = health_handlers(sync, ready_max_lag, demo)
    app.router.add_get("/health/live", live, name="health.live")
    app.router.add_get("/health/ready", ready, name="health.ready")
    app.router.add_post("/webhook", webhook_handler(webhook_secret, control), name="webhook")
    return app
