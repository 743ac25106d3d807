"""The sync worker: the initial crawl, then following upstream for good.

``run`` (continuous) crawls once if the mirror is not complete, then runs
side by side, sharing one lock so their writes keep upstream's order:

* the follower, polling events every ``poll_interval`` seconds (at once
  when a webhook arrives, see ``gateway.ops.webhooks``) and applying them;
* the sweeper, reading lists within a request budget (``sync.sweep``).

Upstream down, slow or failing: each loop records the error, backs off
(doubling, up to five minutes) and tries again by itself; the mirror keeps
what it has, since every batch commits whole or not at all.  ``once``
brings the mirror up to date and returns: the crawl if needed, else a poll
and one round of every sweep.

The worker's status (last success, lag, cursor, last error, request rate)
goes to the control file, never the mirror, so idle passes write nothing
there.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiosqlite
import orjson

from mirror import store
from mirror.control import Control
from mirror.store import Batch
from sync.backoff import Backoff
from sync.crawler import Crawler, check_origin, learn_states
from sync.events import CURSOR, Follower, wanted
from sync.fetch import RECOVERABLE, Fetcher
from sync.progress import Progress
from sync.refresh import Refresher, Wanted
from sync.sweep import Sweeper
from sync.upstream import Source, describe_failure

log = logging.getLogger(__name__)

#: Requests a failed crawl attempt must have made to count as progress.
PROGRESS = 10
#: How often the webhook queue is looked at.
WEBHOOK_POLL = 0.2


@dataclass(frozen=True)
class Settings:
    poll_interval: float = 10.0
    budget: float = 60.0
    interval: float = 120.0
    hot_interval: float = 30.0
    overlap: float = 60.0
    concurrency: int = 4
    #: The change log kept: days, and rows (see mirror.store.trim_changes).
    changes_days: float = store.CHANGES_DAYS
    changes_rows: int = store.CHANGES_ROWS


#: Seconds between trims of the change log.
TRIM_EVERY = 300.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Worker:
    def __init__(
        self,
        db: aiosqlite.Connection,
        source: Source,
        base_url: str,
        control: Control,
        settings: Settings,
        *,
        progress: Progress | None = None,
    ) -> None:
        self.db = db
        self.source = source
        self.base_url = base_url
        self.control = control
        self.settings = settings
        self.progress = progress or Progress()
        self.fetcher = Fetcher(source, base_url, concurrency=settings.concurrency)
        self.follower = Follower(db, self.fetcher, overlap=settings.overlap)
        self.lock = asyncio.Lock()
        self.sweeper = Sweeper(
            db,
            self.fetcher,
            self.follower,
            self.lock,
            budget=settings.budget,
            interval=settings.interval,
            hot_interval=settings.hot_interval,
        )
        self.wake = asyncio.Event()
        self.applied = 0
        self._samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=120)
        self._states = -1
        #: The unresolved failure of each part (event poll, sweep...).
        self._errors: dict[str, dict[str, str]] = {}
        self.crawl_requests = 0
        #: Failures of the parts, each retried (gateway.ops.metrics shows it).
        self.failures = 0
        #: The failure last logged: its line, the line saying it is over,
        #: and since when (monotonic) the sync has been failing.
        self._outage: tuple[str, str, float] | None = None

    # -- status --------------------------------------------------------------

    def _requests(self) -> int:
        return self.fetcher.requests + self.crawl_requests

    def _rate(self) -> float:
        """Upstream requests per minute over the last few minutes."""
        now, total = time.monotonic(), self._requests()
        self._samples.append((now, total))
        while len(self._samples) > 2 and now - self._samples[0][0] > 300:
            self._samples.popleft()
        then, before = self._samples[0]
        # Over at least a minute, so that a burst at start-up is not a rate.
        return round((total - before) * 60.0 / max(now - then, 60.0), 2)

    def _status(self, **values: Any) -> None:
        self.control.set_status(
            pid=os.getpid(),
            upstream_requests_total=self._requests(),
            upstream_requests_per_minute=self._rate(),
            events_applied_total=self.applied,
            failures_total=self.failures,
            **values,
        )

    def _failed(self, where: str, exc: BaseException, wait: float | None = None) -> None:
        """Record a part's failure; log it once while it repeats (the
        parts fail alike while upstream is down), at debug level after."""
        message = f"{where}: {exc}"
        self.failures += 1
        then = f"retrying in {wait:g} s" if wait is not None else "will retry"
        trouble = describe_failure(self.base_url, exc) or message
        if self._outage is None or self._outage[0] != trouble:
            log.warning("%s; %s", trouble, then)
            recovery = (
                f"upstream {self.base_url} answers again"
                if trouble != message
                else f"{where}: works again"
            )
            since = self._outage[2] if self._outage else time.monotonic()
            self._outage = (trouble, recovery, since)
        else:
            log.debug("%s; %s", message, then)
        self._errors[where] = {"at": _now(), "message": message}
        self._status(state="retrying", last_error=self._last_error())

    def _recovered(self, *parts: str) -> None:
        """The ``parts`` work again; once none fails, say so (once)."""
        for where in parts:
            self._errors.pop(where, None)
        if self._outage is not None and not self._errors:
            _, recovery, since = self._outage
            log.info("%s (after %.0f s)", recovery, time.monotonic() - since)
            self._outage = None

    def _sweep_recovered(self) -> None:
        self._recovered("sweep")
        self._status(
            state="retrying" if self._errors else "following", last_error=self._last_error()
        )

    def _last_error(self) -> dict[str, str] | None:
        """The latest failure of a part that has not succeeded since."""
        return max(self._errors.values(), key=lambda e: e["at"], default=None)

    # -- the parts -----------------------------------------------------------

    async def crawl(self) -> None:
        crawler = Crawler(
            self.db,
            self.source,
            self.base_url,
            concurrency=self.settings.concurrency,
            progress=self.progress,
        )
        self._status(state="initial sync", started_at=_now())
        try:
            report = await crawler.run()
        finally:
            self.crawl_requests += crawler.fetcher.requests
            self.fetcher.refused |= crawler.fetcher.refused
        self._recovered("initial sync")
        log.info(
            "initial sync complete: %d requests, %d objects written, %d deleted, %.1fs%s",
            report.requests,
            report.objects,
            report.deleted,
            report.seconds,
            f"; not visible to the sync identity: {', '.join(report.skipped)}"
            if report.skipped
            else "",
        )
        self._status(state="following", last_success=_now(), last_error=self._last_error())

    async def poll(self) -> int:
        """Apply new events (and queued webhooks); record the outcome."""
        started, requests = time.monotonic(), self._requests()
        async with self.lock:
            new = await self.follower.poll()
            await self._webhooks()
            await self._relearn_states()
        self.applied += new
        seconds = round(time.monotonic() - started, 3)
        spent = self._requests() - requests
        log.info(
            "event poll: %d new events applied, %d upstream requests, %.2fs",
            new,
            spent,
            seconds,
            extra={"step": "event poll", "applied": new, "requests": spent, "seconds": seconds},
        )
        self._recovered("event poll", "initial sync")
        self._status(
            state="retrying" if self._errors else "following",
            last_success=_now(),
            last_error=self._last_error(),
            cursor=await store.get_meta(self.db, CURSOR),
        )
        return new

    async def _webhooks(self) -> None:
        """Refresh what queued webhooks name that no event applied yet."""
        pending = self.control.pending_webhooks()
        if not pending:
            return
        want, ids = Wanted(), []
        for _, body in pending:
            try:
                event = orjson.loads(body)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict) and type(event.get("id")) is int:
                ids.append(event["id"])
                want.update(wanted(event))
        known = await self.follower.known(ids)
        if want and len(known) < len(ids):
            batch = await Refresher(self.db, self.fetcher).collect(want, Batch())
            await store.write(self.db, batch)
        self.control.webhooks_done([seq for seq, _ in pending])

    async def _relearn_states(self) -> None:
        """Learn upstream's states again when a new one shows up."""
        count = await self._state_count()
        if count != self._states:
            if self._states >= 0:
                await learn_states(self.db, self.fetcher)
            self._states = await self._state_count()

    async def _state_count(self) -> int:
        rows = list(await self.db.execute_fetchall("SELECT count(*) FROM states"))
        return int(rows[0][0])

    # -- entry points --------------------------------------------------------

    async def once(self) -> None:
        """Bring the mirror up to date, then return."""
        await check_origin(self.db, self.base_url)
        if await store.get_meta(self.db, "sync.state") != "complete":
            await self.crawl()
            await self.poll()
            return
        await self.poll()
        await self.sweeper.full_round()
        await self.poll()
        await self._trim_changes()

    async def _trim_changes(self) -> None:
        await store.trim_changes(self.db, self.settings.changes_days, self.settings.changes_rows)

    async def _keep_changes_trimmed(self) -> None:
        """The change log within its bounds, checked every few minutes."""
        while True:
            try:
                await self._trim_changes()
            except sqlite3.Error as exc:  # a full or read-only disk: the next time
                log.warning("could not trim the change log: %s", exc)
            await asyncio.sleep(TRIM_EVERY)

    async def run(self) -> None:
        """Crawl if needed, then follow upstream until cancelled."""
        await check_origin(self.db, self.base_url)
        backoff = Backoff(self.settings.poll_interval)
        crawled = False
        while await store.get_meta(self.db, "sync.state") != "complete":
            before = self.crawl_requests
            try:
                await self.crawl()
                crawled = True
            except RECOVERABLE as exc:
                # A crawl that got somewhere resumes there: try again soon.
                progressed = self.crawl_requests - before >= PROGRESS
                wait = backoff.failed(progressed)
                self._failed("initial sync", exc, wait)
                await asyncio.sleep(wait)
        self.sweeper.start(fresh=crawled)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._follow())
                group.create_task(self._sweep())
                group.create_task(self._watch_webhooks())
                group.create_task(self._keep_changes_trimmed())
        except BaseExceptionGroup as failed:  # a broken mirror, say: say what
            raise failed.exceptions[0] from None

    async def _follow(self) -> None:
        backoff = Backoff(self.settings.poll_interval)
        while True:
            try:
                await self.poll()
                backoff.succeeded()
                wait = self.settings.poll_interval
            except RECOVERABLE as exc:
                wait = backoff.failed()
                self._failed("event poll", exc, wait)
            self.wake.clear()
            try:
                async with asyncio.timeout(wait):
                    await self.wake.wait()
            except TimeoutError:
                pass

    async def _sweep(self) -> None:
        await self.sweeper.run(
            on_error=lambda exc: self._failed("sweep", exc),
            on_recovered=self._sweep_recovered,
        )

    async def _watch_webhooks(self) -> None:
        while True:
            await asyncio.sleep(WEBHOOK_POLL)
            if self.control.pending_webhooks():
                self.wake.set()
