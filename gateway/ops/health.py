"""Health: liveness (the process answers) and readiness, for load balancers."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway.ops.status import SyncStatus


def health_handlers(status: SyncStatus, max_lag: float, demo: bool) -> tuple[Any, Any]:
    """Liveness (the process answers) and readiness, for load balancers.

    Ready: the mirror can be read, its initial sync is complete (or it is
    the demo), and, with ``max_lag`` > 0, it last matched upstream at most
    ``max_lag`` seconds ago, so a balancer routes around a stale replica.
    """

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"status": "live"})

    async def ready(request: web.Request) -> web.Response:
        problems = []
        try:
            complete = demo or status.reader.meta("sync.state") == "complete"
        except sqlite3.Error as exc:
            complete = False
            problems.append(f"the mirror cannot be read: {exc}")
        if not complete and not problems:
            problems.append("the initial sync is not complete")
        when = status.last_success()
        lag = (datetime.now(UTC) - when).total_seconds() if when else None
        if max_lag > 0 and not demo and (lag is None or lag > max_lag):
            shown = "never" if lag is None else f"{lag:.0f} s ago"
            problems.append(f"the mirror last matched upstream {shown} (limit {max_lag:.0f} s)")
        body = {
            "status": "not ready" if problems else "ready",
            "lag_seconds": None if lag is None else round(lag, 1),
            "problems": problems,
        }
        return web.json_response(body, status=503 if problems else 200)

    return live, ready
