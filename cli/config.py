"""Configuration: a TOML file, validated at start-up.

Every problem is reported as one line naming the setting, e.g.
``config error: [server] port: expected an integer from 0 to 65535``.
See ``config.example.toml`` for every key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.settings import LOOPBACK, GatewaySettings, ServerSettings

TOKEN_ENV = "PATCHWORK_GATEWAY_TOKEN"
WEBHOOK_SECRET_ENV = "PATCHWORK_GATEWAY_WEBHOOK_SECRET"
REPLICATION_TOKEN_ENV = "PATCHWORK_GATEWAY_REPLICATION_TOKEN"


class ConfigError(Exception):
    """A setting is missing or wrong; the message names it."""


@dataclass(frozen=True)
class UpstreamConfig:
    url: str  # "" means no upstream: the gateway serves the demo mirror
    token: str
    concurrency: int
    timeout: float


@dataclass(frozen=True)
class StorageConfig:
    path: Path
    #: The change log kept (what changed, in order): days, and rows.
    change_log_days: float = 7.0
    change_log_rows: int = 1_000_000


@dataclass(frozen=True)
class SyncConfig:
    #: Seconds between polls of upstream's events.
    poll_interval: float = 10.0
    #: Upstream requests per minute the sweeps may spend.
    sweep_budget: float = 60.0
    #: Every list is swept whole at most this often (seconds).
    sweep_interval: float = 120.0
    #: The newest patches, covers and series are swept this often.
    hot_interval: float = 30.0
    #: Seconds of events read again at each poll (late commits).
    event_overlap: float = 60.0
    #: HMAC secret of upstream's webhooks ("": the endpoint is off).
    webhook_secret: str = ""


@dataclass(frozen=True)
class Config:
    upstream: UpstreamConfig
    storage: StorageConfig
    server: ServerSettings
    log_level: str
    source: Path | None = None
    sync: SyncConfig = SyncConfig()
    #: "text" or "json" (one JSON object a line).
    log_format: str = "text"
    #: What was understood otherwise than written, logged at start.
    warnings: tuple[str, ...] = ()

    @property
    def gateway(self) -> GatewaySettings:
        """What the server is told (gateway.settings)."""
        return GatewaySettings(
            server=self.server,
            mirror=self.storage.path,
            upstream=self.upstream.url,
            token=self.upstream.token,
            upstream_timeout=self.upstream.timeout,
            webhook_secret=self.sync.webhook_secret,
        )


_KNOWN = {
    "upstream": {"url", "token", "concurrency", "timeout"},
    "storage": {"path", "change_log_days", "change_log_rows"},
    "server": {
        "host",
        "port",
        "public_url",
        "cache_bytes",
        "mirror_cache_bytes",
        "refresh_interval",
        "allowed_hosts",
        "cache_max_age",
        "workers",
        "access_log",
        "ready_max_lag",
        "trusted_proxies",
        "status_details",
        "feed_waiting",
        "feed_waiting_per_client",
        "replication_token",
        "snapshot_max_age",
    },
    "sync": {
        "poll_interval",
        "sweep_budget",
        "sweep_interval",
        "hot_interval",
        "event_overlap",
        "webhook_secret",
    },
    "logging": {"level", "format"},
}


_KINDS = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
}


#: Settings whose values are never echoed in an error (it reaches logs).
_SECRETS = frozenset(("token", "webhook_secret", "replication_token"))


def _get(table: dict[str, Any], section: str, key: str, kind: type, default: Any) -> Any:
    value = table.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        expected = _KINDS.get(kind, kind.__name__)
        got = f"a {type(value).__name__}" if key in _SECRETS else repr(value)
        raise ConfigError(f"[{section}] {key}: expected {expected}, got {got}")
    return value


def _http_url(section: str, key: str, value: str) -> str:
    if not value:
        return ""
    try:
        parts = urlsplit(value)
        userinfo = parts.username is not None or parts.password is not None
    except ValueError:  # (an invalid port, say)
        raise ConfigError(f"[{section}] {key}: expected an http(s) URL") from None
    if userinfo:
        # It would end up in redirects and logs (and so not in this
        # message either); tokens go in [upstream] token.
        raise ConfigError(f"[{section}] {key}: must not contain a user name or password")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"[{section}] {key}: expected an http(s) URL, got {value!r}")
    return value.rstrip("/")


#: An API path after an instance's origin, as git-pw's ``pw.server`` has it.
_API_PATH = re.compile(r"/api(?:/[0-9]+(?:\.[0-9]+)*)?/?$")


def _upstream_origin(url: str) -> tuple[str, str | None]:
    """The instance ``url`` names (``https://pw.example.com/api/1.2/`` is
    ``https://pw.example.com``), and a warning when a path was dropped."""
    path = urlsplit(url).path
    match = _API_PATH.search(path)
    if not match:
        return url.rstrip("/"), None
    origin = url[: len(url) - len(path) + match.start()].rstrip("/")
    return origin, (
        f"[upstream] url: using {origin}, without {path[match.start() :]!r}: the gateway "
        "mirrors the whole instance and serves every API version itself"
    )


def parse(data: dict[str, Any], source: Path | None = None) -> Config:
    for section, table in data.items():
        if section not in _KNOWN:
            raise ConfigError(f"[{section}]: unknown section")
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}]: expected a table")
        for key in table:
            if key not in _KNOWN[section]:
                raise ConfigError(f"[{section}] {key}: unknown setting")

    up = data.get("upstream", {})
    written = _get(up, "upstream", "url", str, "").strip()
    url = _http_url("upstream", "url", written)
    url, dropped = _upstream_origin(written) if url else ("", None)
    warnings = (dropped,) if dropped else ()
    token = os.environ.get(TOKEN_ENV) or _get(up, "upstream", "token", str, "")
    concurrency = _get(up, "upstream", "concurrency", int, 4)
    if not 1 <= concurrency <= 64:
        raise ConfigError("[upstream] concurrency: expected an integer from 1 to 64")
    timeout = _get(up, "upstream", "timeout", float, 60.0)
    if not 0 < timeout <= 3600:
        raise ConfigError("[upstream] timeout: expected seconds, more than 0 and at most 3600")

    st = data.get("storage", {})
    path_str = _get(st, "storage", "path", str, "mirror.sqlite3")
    if not path_str:
        raise ConfigError("[storage] path: must not be empty")
    path = Path(path_str).expanduser()
    if not path.is_absolute() and source is not None:
        path = source.parent / path
    log_days = _get(st, "storage", "change_log_days", float, 7.0)
    if not 0 < log_days <= 3650:
        raise ConfigError("[storage] change_log_days: expected days, more than 0")
    log_rows = _get(st, "storage", "change_log_rows", int, 1_000_000)
    if not 1000 <= log_rows <= 1_000_000_000:
        raise ConfigError("[storage] change_log_rows: expected 1000 to 1000000000")

    sv = data.get("server", {})
    host = _get(sv, "server", "host", str, "127.0.0.1")
    port = _get(sv, "server", "port", int, 8080)
    if not 0 <= port <= 65535:
        raise ConfigError("[server] port: expected an integer from 0 to 65535")
    public_url = _http_url("server", "public_url", _get(sv, "server", "public_url", str, ""))
    if public_url and urlsplit(public_url).path not in ("", "/"):
        raise ConfigError("[server] public_url: must be an origin, without a path")
    cache_bytes = _get(sv, "server", "cache_bytes", int, 256 * 1024 * 1024)
    if cache_bytes < 0:
        raise ConfigError("[server] cache_bytes: must not be negative")
    mirror_cache = _get(sv, "server", "mirror_cache_bytes", int, 128 * 1024 * 1024)
    if mirror_cache < 16 * 1024 * 1024:
        raise ConfigError("[server] mirror_cache_bytes: at least 16777216 (16 MiB)")
    refresh = _get(sv, "server", "refresh_interval", float, 0.25)
    if not 0 < refresh <= 3600:
        raise ConfigError("[server] refresh_interval: expected seconds, more than 0")
    hosts = _get(sv, "server", "allowed_hosts", list, [])
    if not all(isinstance(h, str) and h for h in hosts):
        raise ConfigError("[server] allowed_hosts: expected a list of host names")
    if not hosts and not public_url:
        hosts = default_hosts(host)
    max_age = _get(sv, "server", "cache_max_age", int, 5)
    if not 0 <= max_age <= 86400:
        raise ConfigError("[server] cache_max_age: expected seconds from 0 to 86400")
    workers = _get(sv, "server", "workers", int, 1)
    if not 1 <= workers <= 64:
        raise ConfigError("[server] workers: expected an integer from 1 to 64")
    access_log = _get(sv, "server", "access_log", bool, False)
    ready_max_lag = _get(sv, "server", "ready_max_lag", float, 600.0)
    if not 0 <= ready_max_lag <= 30 * 86400:
        raise ConfigError("[server] ready_max_lag: expected seconds from 0 to 2592000")
    trusted = tuple(_networks(sv, "trusted_proxies", []))
    details_value = sv.get("status_details", False)
    details: bool | tuple[str, ...] = (
        details_value
        if isinstance(details_value, bool)
        else tuple(_networks(sv, "status_details", []))
    )

    feed_bounds = []
    for key, most in (("feed_waiting", 1000), ("feed_waiting_per_client", 100)):
        bound = _get(sv, "server", key, int, most)
        if not 0 <= bound <= 100_000:
            raise ConfigError(f"[server] {key}: expected an integer from 0 to 100000")
        feed_bounds.append(bound)
    replication_token = os.environ.get(REPLICATION_TOKEN_ENV) or _get(
        sv, "server", "replication_token", str, ""
    )
    if replication_token and len(replication_token) < 16:
        raise ConfigError("[server] replication_token: at least 16 characters")
    snapshot_max_age = _get(sv, "server", "snapshot_max_age", float, 3600.0)
    if not 60 <= snapshot_max_age <= 30 * 86400:
        raise ConfigError("[server] snapshot_max_age: expected seconds from 60 to 2592000")

    sy = data.get("sync", {})
    seconds = {}
    for key, default, low, high in (
        ("poll_interval", 10.0, 0.05, 3600),
        ("sweep_budget", 60.0, 1, 100_000),
        ("sweep_interval", 120.0, 1, 7 * 86400),
        ("hot_interval", 30.0, 1, 86400),
        ("event_overlap", 60.0, 0, 7 * 86400),
    ):
        value = _get(sy, "sync", key, float, default)
        if not low <= value <= high:
            raise ConfigError(f"[sync] {key}: expected a number from {low} to {high}")
        seconds[key] = value
    secret = os.environ.get(WEBHOOK_SECRET_ENV) or _get(sy, "sync", "webhook_secret", str, "")

    lg = data.get("logging", {})
    level = _get(lg, "logging", "level", str, "info").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("[logging] level: expected debug, info, warning or error")
    log_format = _get(lg, "logging", "format", str, "text").lower()
    if log_format not in ("text", "json"):
        raise ConfigError("[logging] format: expected text or json")

    return Config(
        upstream=UpstreamConfig(url, token, concurrency, timeout),
        storage=StorageConfig(path, log_days, log_rows),
        server=ServerSettings(
            host,
            port,
            public_url,
            cache_bytes,
            refresh,
            tuple(h.lower() for h in hosts),
            mirror_cache,
            max_age,
            workers,
            access_log,
            ready_max_lag,
            trusted,
            details,
            feed_waiting=feed_bounds[0],
            feed_waiting_per_client=feed_bounds[1],
            replication_token=replication_token,
            snapshot_max_age=snapshot_max_age,
        ),
        log_level=level,
        source=source,
        sync=SyncConfig(**seconds, webhook_secret=secret),
        log_format=log_format,
        warnings=warnings,
    )


def _networks(table: dict[str, Any], key: str, default: list[str]) -> list[str]:
    """A list of addresses or networks (``10.0.0.0/8``), checked."""
    values = table.get(key, default)
    expected = f"[server] {key}: expected a list of IP addresses or networks"
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(expected + (" (or true or false)" if key == "status_details" else ""))
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ConfigError(f"{expected}, got {value!r}") from None
    return values


WILDCARD = ("0.0.0.0", "::", "")


def default_hosts(listen: str) -> list[str]:
    """The Host names answered when none are configured (as Django's
    ALLOWED_HOSTS): the listen address, and localhost when it is loopback.
    Listening on every interface, only localhost until some are set."""
    name = listen.strip("[]").lower()
    if name in WILDCARD:
        return list(LOOPBACK)
    if name in LOOPBACK or name.startswith("127."):
        return [name, *(h for h in LOOPBACK if h != name)]
    return [name]


def load(path: str | Path | None, overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    """Read and validate the TOML file at ``path`` (``None``: all defaults),
    with ``overrides`` (from the command line: ``{"server": {"port": 8081}}``)
    in place of what it says."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for section, values in (overrides or {}).items():
        table = data.setdefault(section, {})
        if isinstance(table, dict):  # (else parse names the broken section)
            table.update(values)
    return parse(data, source=None if path is None else path.resolve())
