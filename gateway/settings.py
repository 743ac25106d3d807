"""What the server is told at start: its settings, read and checked from
the configuration file by ``cli.config``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Host names of the machine itself (health checks answer them always).
LOOPBACK = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class ServerSettings:
    """The ``[server]`` table (cli.config reads and checks it)."""

    host: str
    port: int
    #: Origin the gateway is reached at (``https://pw.example.com``); empty
    #: means the origin of each request.
    public_url: str
    cache_bytes: int
    #: How often the server looks for sync writes to drop stale caches.
    refresh_interval: float
    #: Host names the gateway answers to (empty: any well-formed Host).
    allowed_hosts: tuple[str, ...]
    #: Bytes of parsed objects, rendered list items and counts kept.
    mirror_cache_bytes: int = 128 * 1024 * 1024
    #: Seconds shared HTTP caches may keep an anonymous answer.
    cache_max_age: int = 5
    #: Server processes sharing the port (SO_REUSEPORT) and the mirror.
    workers: int = 1
    #: One log line per request (aiohttp's access log).
    access_log: bool = False
    #: Seconds since the mirror last matched upstream beyond which the
    #: readiness check fails (0: never for lag).
    ready_max_lag: float = 600.0
    #: Addresses of reverse proxies in front (nginx): from them, the
    #: client's address is read from ``X-Forwarded-For``.
    trusted_proxies: tuple[str, ...] = ()
    #: Who sees every count in /_gateway/status and /metrics (people,
    #: users, private bundles): nobody (False), everybody (True), or the
    #: clients in these networks.
    status_details: bool | tuple[str, ...] = False
    #: Change feed streams and held requests (``wait``) open at once, in
    #: this process and from one client (beyond: 503).
    feed_waiting: int = 1000
    feed_waiting_per_client: int = 100
    #: What replicas present (``Authorization: Bearer ...``) to get the
    #: whole mirror: every snapshot and feed entry ("": none may).
    replication_token: str = ""
    #: Seconds a snapshot is kept and served before the next is made.
    snapshot_max_age: float = 3600.0


@dataclass(frozen=True)
class GatewaySettings:
    """Everything the server needs to know."""

    server: ServerSettings
    #: The mirror's SQLite file.
    mirror: Path
    #: The upstream Patchwork ("": none, the demo) and the sync identity's
    #: token (read-backs after writes read as the sync does).
    upstream: str = ""
    token: str = ""
    upstream_timeout: float = 60.0
    #: HMAC secret of upstream's webhooks ("": the endpoint is off).
    webhook_secret: str = ""
