"""Prometheus metrics at ``/metrics``, right across several server processes.

A request costs a dict update here, not a call into ``prometheus_client``
(about 5 us a request, a tenth of a cached read): each process counts in
plain integers (:class:`Counts`) and publishes what it counted since the
last time (:class:`Publisher`) every second and before answering a scrape.
With ``[server] workers`` above 1, the published values go through
``prometheus_client``'s multiprocess files, so whichever process a scrape
reaches, it answers the sum over every process (``prepare_multiprocess``,
called by the first process before any of them imports
``prometheus_client``).

What the sync worker does is read at scrape time from the mirror and its
control file (gateway.ops.status): last success and lag, the events cursor's
age, its upstream requests and failures, objects per resource.

Labels are bounded: routes are URL templates (``/api/{version}/patches/
{id}/``), methods and statuses are those HTTP has, upstream kinds and
errors are a fixed few.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from gateway.ops.status import SyncStatus, mirror_bytes, parse_time, visible_counts
from mirror.reader import QueryTooSlow, ReaderBusy

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "patchwork_gateway"
#: Latency buckets (seconds): a cached read takes well under a millisecond,
#: a forwarded write up to upstream's timeout.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))

#: Upstream outcomes that are failures (the rest are status classes, and a
#: read-back's "done").
ERRORS = frozenset(("5xx", "timeout", "unreachable", "too_large", "busy", "failed"))
#: Seconds between publications of what a process counted.
PUBLISH_INTERVAL = 1.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsFolderError(Exception):
    """The folder for the processes' metric files cannot be used."""


def prepare_multiprocess() -> Callable[[], None]:
    """A clean folder for the processes' metric files, named in the
    environment the other processes inherit (``PROMETHEUS_MULTIPROC_DIR``
    if set, one per gateway; else a new temporary one); what to call on
    the way out."""
    given = os.environ.get(MULTIPROC_ENV)
    try:
        if not given:
            folder = Path(tempfile.mkdtemp(prefix="patchwork-gateway-metrics-"))
            os.environ[MULTIPROC_ENV] = str(folder)
            return lambda: shutil.rmtree(folder, ignore_errors=True)
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MetricsFolderError(
            f"{MULTIPROC_ENV}: cannot use {given or 'a temporary folder'}: {exc}"
        ) from None

    def clean() -> None:  # counts of an earlier run, or of this one
        for stale in folder.glob("*.db"):
            stale.unlink(missing_ok=True)

    clean()
    return clean


def process_gone(pid: int) -> None:
    """Forget a dead server process's gauges (its counters still count)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid)


class Counts:
    """What one process counted since it last published: plain numbers.

    A request costs one dict look-up: each (route, method, status) has a
    row of latency bucket counts (the last: +Inf) and their sum; the
    request counts and each route's histogram are added up when published.
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], list[float]] = {}
        self.upstream: dict[tuple[str, str], list[float]] = {}
        self.gc: dict[str, list[float]] = {}

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        # (_add, inlined: every request comes here.)
        key = (route, method if method in METHODS else "other", status)
        row = self.requests.get(key)
        if row is None:
            row = self.requests[key] = [0.0] * (len(BUCKETS) + 2)
        row[bisect.bisect_left(BUCKETS, seconds)] += 1
        row[-1] += seconds

    def upstream_call(self, kind: str, outcome: str, seconds: float) -> None:
        """One request to upstream: ``outcome`` is a status class (``2xx``)
        or an error (``timeout``, ``unreachable``, ``too_large``, ``busy``)."""
        _add(self.upstream, (kind, outcome), seconds)

    def gc_pause(self, generation: int, seconds: float) -> None:
        """One garbage collection (gateway.ops.collector)."""
        _add(self.gc, str(generation), seconds)

    def take(self) -> Counts:
        """What was counted; counting starts again from zero."""
        taken = Counts()
        taken.requests, self.requests = self.requests, {}
        taken.upstream, self.upstream = self.upstream, {}
        taken.gc, self.gc = self.gc, {}
        return taken


def _add(table: dict[Any, list[float]], key: Any, seconds: float) -> None:
    """Count one observation of ``seconds`` in ``key``'s row."""
    row = table.get(key)
    if row is None:
        row = table[key] = [0.0] * (len(BUCKETS) + 2)
    row[bisect.bisect_left(BUCKETS, seconds)] += 1
    row[-1] += seconds


def _merge(rows: dict[str, list[float]], label: str, row: list[float]) -> None:
    into = rows.get(label)
    if into is None:
        rows[label] = list(row)
    else:
        for index, value in enumerate(row):
            into[index] += value


class CacheStats(Protocol):
    """What the metrics read of the cache of answers (gateway.http.cache)."""

    @property
    def hits(self) -> int: ...

    @property
    def misses(self) -> int: ...

    @property
    def bytes(self) -> int: ...

    def __len__(self) -> int: ...


class Publisher:
    """The process's ``prometheus_client`` metrics, fed from :class:`Counts`."""

    def __init__(self, counts: Counts, cache: CacheStats) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            disable_created_metrics,
        )

        disable_created_metrics()  # (a _created line per series: noise)

        self.counts = counts
        self.cache = cache
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        #: This process's own metrics (scraped through the files instead
        #: when several processes serve).
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=reg,
        )
        self.durations = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time from the request's arrival at the handler to its answer.",
            ["route"],
            buckets=BUCKETS,
            registry=reg,
        )
        self.upstream = Counter(
            f"{PREFIX}_upstream_requests",
            "Requests the server sent upstream, by kind (forward: writes and "
            "what the mirror cannot answer; identity: token checks; readback: "
            "reading a write back) and outcome (status class or error).",
            ["kind", "outcome"],
            registry=reg,
        )
        self.upstream_errors = Counter(
            f"{PREFIX}_upstream_errors",
            "Upstream requests that failed: timeouts, unreachable, answers too "
            "large, 5xx, and requests refused because every upstream slot was taken.",
            ["kind", "error"],
            registry=reg,
        )
        self.upstream_durations = Histogram(
            f"{PREFIX}_upstream_request_duration_seconds",
            "Time upstream took to answer the server, by kind.",
            ["kind"],
            buckets=BUCKETS,
            registry=reg,
        )
        self.cache_hits = Counter(
            f"{PREFIX}_response_cache_hits", "Answers found in the response cache.", registry=reg
        )
        self.cache_misses = Counter(
            f"{PREFIX}_response_cache_misses",
            "Response cache look-ups that found nothing.",
            registry=reg,
        )
        self.cache_bytes = Gauge(
            f"{PREFIX}_response_cache_bytes",
            "Bytes of answers kept in the response caches (all processes).",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.cache_entries = Gauge(
            f"{PREFIX}_response_cache_entries",
            "Answers kept in the response caches (all processes).",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.gc_pauses = Histogram(
            f"{PREFIX}_gc_pause_seconds",
            "Pauses of the event loop for Python's garbage collector, by generation "
            "(gateway.ops.collector).",
            ["generation"],
            buckets=BUCKETS,
            registry=reg,
        )
        self._hits = self._misses = 0

    def publish(self) -> None:
        """Add what was counted since the last call."""
        taken = self.counts.take()
        durations: dict[str, list[float]] = {}
        for (route, method, status), row in taken.requests.items():
            self.requests.labels(route, method, str(status)).inc(sum(row[:-1]))
            _merge(durations, route, row)
        for route, row in durations.items():
            _add_histogram(self.durations.labels(route), row)
        upstream: dict[str, list[float]] = {}
        for (kind, outcome), row in taken.upstream.items():
            n = sum(row[:-1])
            self.upstream.labels(kind, outcome).inc(n)
            if outcome in ERRORS:
                self.upstream_errors.labels(kind, outcome).inc(n)
            if outcome != "busy":  # (refused at once: no upstream time)
                _merge(upstream, kind, row)
        for kind, row in upstream.items():
            _add_histogram(self.upstream_durations.labels(kind), row)
        hits, misses = self.cache.hits, self.cache.misses
        self.cache_hits.inc(hits - self._hits)
        self.cache_misses.inc(misses - self._misses)
        self._hits, self._misses = hits, misses
        self.cache_bytes.set(self.cache.bytes)
        self.cache_entries.set(len(self.cache))
        for generation, row in taken.gc.items():
            _add_histogram(self.gc_pauses.labels(generation), row)

    def scrape_registry(self) -> CollectorRegistry:
        """Every process's published metrics (or this one's alone)."""
        if not self.multiprocess:
            return self.registry
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        folder = Path(os.environ[MULTIPROC_ENV])
        if not folder.is_dir():  # removed under us (a /tmp cleaner, say)
            log.warning("%s %s vanished; counting again from zero", MULTIPROC_ENV, folder)
            folder.mkdir(parents=True, exist_ok=True)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry


def _add_histogram(child: Any, row: list[float]) -> None:
    """Add bucket counts and a sum to a histogram child at once.

    ``prometheus_client`` offers only one observation at a time; its
    per-bucket values are the documented multiprocess-safe value objects
    (``tests/test_metrics.py`` checks the published histogram).
    """
    for index, n in enumerate(row[:-1]):
        if n:
            child._buckets[index].inc(n)
    child._sum.inc(row[-1])


async def mirror_families(status: SyncStatus, path: Path, details: bool) -> list[Any]:
    """The mirror's and the sync worker's state, read now (one process's
    view of the shared files: never summed over processes); the objects
    per resource as last counted (counting a large mirror takes seconds)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    families: list[Any] = []

    def gauge(name: str, doc: str, value: float | None) -> None:
        if value is not None:
            families.append(GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value))

    def counter(name: str, doc: str, value: Any) -> None:
        if isinstance(value, int | float):
            families.append(CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value))

    sync = status.current()
    now = datetime.now(UTC)
    # The demo mirror was built once from a recording: its age is no lag.
    demo = status.reader.meta("demo") is not None
    when = None if demo else status.last_success()
    gauge(
        "sync_last_success_timestamp_seconds",
        "When the mirror last matched upstream (Unix time).",
        when.timestamp() if when else None,
    )
    gauge(
        "sync_lag_seconds",
        "Seconds since the mirror last matched upstream.",
        (now - when).total_seconds() if when else None,
    )
    cursor = None if demo else parse_time(status.reader.meta("events.cursor"))
    gauge(
        "sync_cursor_age_seconds",
        "Age of the newest upstream event the mirror has applied.",
        (now - cursor).total_seconds() if cursor else None,
    )
    complete = status.reader.meta("sync.state") == "complete"
    gauge("initial_sync_complete", "1 once the initial sync is complete.", float(complete))
    gauge(
        "sync_failing",
        "1 while a part of the sync worker fails and retries.",
        float(bool(sync.get("last_error"))) if sync else None,
    )
    counter(
        "sync_upstream_requests",
        "Requests the sync worker sent upstream (since it started).",
        sync.get("upstream_requests_total"),
    )
    counter(
        "sync_upstream_failures",
        "Failures of the sync worker's parts, each retried (since it started).",
        sync.get("failures_total"),
    )
    counter(
        "sync_events_applied",
        "Upstream events the sync worker applied (since it started).",
        sync.get("events_applied_total"),
    )
    objects = GaugeMetricFamily(
        f"{PREFIX}_mirror_objects", "Objects in the mirror, per resource.", labels=["resource"]
    )
    for name, count in visible_counts(status.counts_soon(), details).items():
        objects.add_metric([name], count)
    families.append(objects)
    gauge("mirror_size_bytes", "Bytes of the mirror's files on disk.", float(mirror_bytes(path)))
    gauge("mirror_readable", "0 when the mirror could not be read.", 1.0)
    return families


def metrics_handler(
    publisher: Publisher,
    status: SyncStatus,
    path: Path,
    details: Callable[[web.Request], bool],
) -> Callable[[web.Request], Any]:
    """``GET /metrics`` in Prometheus' text format; ``details``: whether a
    request may see every count (gateway.status.visible_counts)."""
    from prometheus_client import CollectorRegistry, generate_latest

    async def handle(request: web.Request) -> web.Response:
        publisher.publish()
        body = generate_latest(publisher.scrape_registry())
        try:
            families = await mirror_families(status, path, details(request))
        except (sqlite3.Error, ReaderBusy, QueryTooSlow, OSError) as exc:
            # The requests' metrics still count most when the mirror fails.
            log.warning("metrics: the mirror cannot be read: %s", exc)
            families = [_unreadable()]
        mirror = CollectorRegistry()
        mirror.register(_Fixed(families))
        body += generate_latest(mirror)
        return web.Response(
            body=body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"}
        )

    return handle


def _unreadable() -> Any:
    from prometheus_client.core import GaugeMetricFamily

    return GaugeMetricFamily(
        f"{PREFIX}_mirror_readable", "0 when the mirror could not be read.", value=0
    )


class _Fixed:
    """A collector of metric families computed beforehand."""

    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> list[Any]:
        return self.families


async def publish_every(publisher: Publisher, interval: float = PUBLISH_INTERVAL) -> None:
    """Publish what this process counted, once a second, until cancelled
    (and once more then)."""
    try:
        while True:
            await asyncio.sleep(interval)
            try:
                publisher.publish()
            except Exception:  # (counting must go on; say why once a second)
                log.exception("publishing metrics failed")
    finally:
        with contextlib.suppress(Exception):
            publisher.publish()
