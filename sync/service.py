"""Running the sync: the command line's one door into ``sync/``.

``sync`` (and the worker ``run`` starts) follows upstream, or brings the
mirror up to date once (:func:`follow`); the demo mirrors a recording
(:func:`mirror_recording`).  What they may fail with, and the names of
what the sync keeps in the mirror, are here too, so that nothing outside
``sync/`` assembles its parts.  (The server's door is ``sync.now``; the
drift check's, ``sync.reading``.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from mirror import schema
from mirror.control import Control, claim
from sync.crawler import PROBE_404, Crawler, Report, probe_index
from sync.events import CURSOR
from sync.fetch import Fetcher, SyncError
from sync.progress import Progress
from sync.recorded import Recording, RecordingSource, read_records
from sync.replica import Replica, is_gateway, is_replica
from sync.upstream import Upstream, UpstreamError, describe_failure
from sync.worker import Settings, Worker

log = logging.getLogger("patchwork-gateway")

__all__ = [
    "CURSOR",
    "PROBE_404",
    "Recording",
    "Settings",
    "SyncError",
    "Upstream",
    "UpstreamError",
    "describe_failure",
    "follow",
    "mirror_recording",
    "read_records",
]


@dataclass(frozen=True)
class UpstreamSettings:
    """Where upstream is, as whom to read it, and how politely."""

    url: str
    token: str
    concurrency: int
    timeout: float
    #: Presented to an upstream that is another gateway (sync.replica).
    replication_token: str = ""


async def follow(
    mirror: Path, upstream: UpstreamSettings, settings: Settings, *, once: bool
) -> None:
    """Keep ``mirror`` in sync with upstream until cancelled (``once``: bring
    it up to date, then return).  Holds the mirror's sync lock throughout."""
    client = Upstream(
        upstream.url,
        upstream.token,
        concurrency=upstream.concurrency,
        timeout=upstream.timeout,
        # Following: fail fast and let the worker back off and try again.
        attempts=6 if once else 3,
        max_backoff=60.0 if once else 10.0,
        say_retries=once,  # (following, the worker says it as it backs off)
    )
    if is_replica(mirror) or await is_gateway(upstream.url):
        # Another gateway: its snapshot, then its change feed (no crawl, no sweeps).
        claimed = claim(mirror)
        try:
            log.info("%s is a gateway: following its change feed", upstream.url)
            await Replica(mirror, upstream.url, upstream.replication_token).run(once)
        finally:
            claimed.close()
        return
    if once and not mirror.exists():
        try:
            # Before any file is made: a start that cannot succeed leaves none.
            await probe_index(Fetcher(client, upstream.url), upstream.url)
        except BaseException:
            await client.close()
            raise
    claimed = claim(mirror)
    db = await schema.connect(mirror)
    control = Control(mirror)
    try:
        worker = Worker(db, client, upstream.url, control, settings, progress=Progress())
        if once:
            await worker.once()
            log.info(
                "sync complete: %d upstream requests in all, %d events applied",
                worker.fetcher.requests + worker.crawl_requests,
                worker.applied,
            )
        else:
            log.info("following %s", upstream.url)
            await worker.run()
    finally:
        await client.close()
        await db.close()
        control.close()
        claimed.close()


async def mirror_recording(
    db: aiosqlite.Connection, recording: Recording, origin: str, not_found: tuple[str, str] | None
) -> Report:
    """Crawl a recorded instance into ``db`` as the sync crawls a live one;
    ``not_found``: the recorded 404 page around its path, to answer the
    sync's probe for it."""
    if not_found:
        before, after = not_found
        recording.add_404(PROBE_404, before + PROBE_404 + after)
    crawler = Crawler(db, RecordingSource(recording), origin, progress=Progress(bar=False))
    return await crawler.run()
