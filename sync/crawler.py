"""The initial (and refreshing) full crawl of an upstream Patchwork.

Phases, in order: the API index and the upstream's 404 page; every page of
every list (``per_page=250``); the details that lists leave out (a patch's
``content``, ``diff`` and ``headers``; a cover's); every page of each
patch's and cover's comments and each patch's checks.

Every unit of work (a list page, a detail, an object's sub-list) is
written to the mirror in the same transaction as a mark saying it is done,
so an interrupted sync, run again, continues where it stopped and never
duplicates: all writes are upserts by upstream id.  A run that finds the
previous pass complete starts a new pass, refreshing everything.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiosqlite
import orjson

from mirror import store
from mirror.resources import RESOURCES
from mirror.store import Batch
from mirror.versions import LATEST
from sync.normalize import BadUpstreamData, Normalizer
from sync.progress import Progress
from sync.upstream import Source, UpstreamError

log = logging.getLogger(__name__)

API = f"/api/{LATEST}"
PER_PAGE = 250
#: Probe path used to learn the upstream's 404 page.
PROBE_404 = f"{API}/patchwork-gateway-404-probe/"

#: Top-level lists, in crawl order: referenced objects first.
LISTS = ("projects", "users", "people", "series", "covers", "patches", "bundles", "events")
#: Sub-lists crawled per object: (parent resource, child resource).
SUBLISTS = (("patches", "patch_comments"), ("patches", "checks"), ("covers", "cover_comments"))

_LAST = re.compile(r'<([^>]*)>;\s*rel="last"')
_NEXT = re.compile(r'<([^>]*)>;\s*rel="next"')
_PAGE = re.compile(r"[?&]page=([0-9]+)")


class SyncError(Exception):
    """The sync cannot go on (wrong upstream, not a Patchwork API...)."""


@dataclass
class Report:
    pages: int = 0
    objects: int = 0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _last_page(link: str | None) -> int | None:
    match = _LAST.search(link or "")
    if not match:
        return None
    page = _PAGE.search(match.group(1))
    return int(page.group(1)) if page else 1


class Writer:
    """Serialises writes: one task drains batches into few transactions."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=32)
        self._task: asyncio.Task[None] | None = None
        self.objects = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def put(self, batch: Batch) -> None:
        if self._task is not None and self._task.done():
            self._task.result()  # surface the writer's failure
        await self._queue.put(batch)

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            taken = 1
            if item is None:
                self._queue.task_done()
                return
            combined = item
            stop = False
            while not self._queue.empty() and len(combined) < 5000:
                nxt = self._queue.get_nowait()
                taken += 1
                if nxt is None:
                    stop = True
                    break
                combined.extend(nxt)
            self.objects += len(combined)
            try:
                await store.write(self._db, combined)
            finally:
                for _ in range(taken):
                    self._queue.task_done()
            if stop:
                return

    async def flush(self) -> None:
        """Wait until everything put so far is committed."""
        waiter = asyncio.ensure_future(self._queue.join())
        assert self._task is not None
        done, _ = await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            waiter.cancel()
            self._task.result()

    async def close(self) -> None:
        if self._task is None:
            return
        if not self._task.done():
            await self._queue.put(None)
        await self._task


class Crawler:
    def __init__(
        self,
        db: aiosqlite.Connection,
        source: Source,
        base_url: str,
        *,
        concurrency: int = 4,
        progress: Progress | None = None,
    ) -> None:
        self.db = db
        self.source = source
        self.base_url = base_url
        self.normalizer = Normalizer(base_url)
        self.concurrency = concurrency
        self.progress = progress or Progress()
        self.writer = Writer(db)
        self.report = Report()

    # -- entry point ------------------------------------------------------

    async def run(self) -> Report:
        started = time.monotonic()
        await self._check_mirror_origin()
        await self._begin_pass()
        self.writer.start()
        try:
            await self._probe_index()
            await self._capture_404()
            for resource in LISTS:
                await self._crawl_list(resource)
            await self.writer.flush()
            for parent, child in SUBLISTS:
                await self._crawl_sublists(parent, child)
            for resource in LISTS:
                if RESOURCES[resource].detail_keys:
                    await self._crawl_details(resource)
            await self.writer.flush()
        finally:
            await self.writer.close()
        await store.set_meta(self.db, "sync.state", "complete")
        await store.set_meta(self.db, "sync.completed_at", datetime.now(UTC).isoformat())
        self.report.objects = self.writer.objects
        self.report.seconds = time.monotonic() - started
        return self.report

    async def _check_mirror_origin(self) -> None:
        known = await store.get_meta(self.db, "upstream.url")
        if known and known.rstrip("/") != self.base_url.rstrip("/"):
            raise SyncError(
                f"this mirror holds {known}, not {self.base_url}; use another storage path"
            )
        await store.set_meta(self.db, "upstream.url", self.base_url.rstrip("/"))

    async def _begin_pass(self) -> None:
        state = await store.get_meta(self.db, "sync.state")
        if state == "running":
            log.info("resuming the interrupted sync pass")
            return
        if state == "complete":
            log.info("previous pass complete; starting a refresh pass")
        await self.db.execute("DELETE FROM sync_marks")
        await store.set_meta(self.db, "sync.state", "running")

    # -- helpers ------------------------------------------------------------

    async def _get_json(self, path: str, expect: type) -> tuple[object, dict[str, str]] | None:
        """GET a JSON document; ``None`` for 403/404 (not visible to us)."""
        resp = await self.source.get(path)
        self.report.pages += 1
        if resp.status in (401, 403, 404):
            return None
        if resp.status != 200:
            raise UpstreamError(f"GET {path}: HTTP {resp.status}")
        try:
            data = resp.json()
        except orjson.JSONDecodeError:
            raise UpstreamError(f"GET {path}: not JSON") from None
        if not isinstance(data, expect):
            raise UpstreamError(f"GET {path}: expected a JSON {expect.__name__}")
        return data, resp.headers

    async def _done(self, kind: str) -> set[int]:
        rows = await self.db.execute_fetchall("SELECT id FROM sync_marks WHERE kind = ?", (kind,))
        return {r[0] for r in rows}

    async def _pool(
        self, items: Iterable[object], work: Callable[[object], Awaitable[None]]
    ) -> None:
        """Run ``work`` over ``items`` with at most ``concurrency`` in flight."""
        iterator = iter(items)

        async def worker() -> None:
            for item in iterator:
                await work(item)

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    def _normalize_items(self, resource: str, items: list, batch: Batch, parent_id=None) -> None:
        for item in items:
            try:
                self.normalizer.add(resource, item, batch, parent_id=parent_id)
            except BadUpstreamData as exc:
                log.warning("skipping a malformed %s object: %s", resource, exc)

    # -- phases ---------------------------------------------------------------

    async def _probe_index(self) -> None:
        got = await self._get_json(f"{API}/", dict)
        if got is None or "patches" not in got[0]:
            raise SyncError(f"{self.base_url} does not serve the Patchwork API {LATEST}")

    async def _capture_404(self) -> None:
        """Keep the upstream's own 404 page, to answer unknown paths alike."""
        resp = await self.source.get(PROBE_404)
        self.report.pages += 1
        ctype = resp.headers.get("Content-Type", "")
        body = resp.body.decode("utf-8", "replace")
        if resp.status == 404 and ctype.startswith("text/html") and PROBE_404 in body:
            before, _, after = body.partition(PROBE_404)
            await store.set_meta(self.db, "upstream.404", orjson.dumps([before, after]).decode())

    async def _crawl_list(self, resource: str) -> None:
        path = RESOURCES[resource].path
        kind = f"list:{resource}"
        done = await self._done(kind)
        first = await self._fetch_page(resource, f"{API}/{path}/", 1, kind, done)
        if first is None:
            self.report.skipped.append(resource)
            log.info("%s: not visible to the sync identity; skipped", resource)
            return
        last = _last_page(first.get("Link"))
        if last is None:
            last = 1
        bar = self.progress.phase(f"{resource} pages", last)
        bar.advance(1)

        async def fetch(page: object) -> None:
            await self._fetch_page(resource, f"{API}/{path}/", int(page), kind, done)  # type: ignore[arg-type]
            bar.advance(1)

        await self._pool(range(2, last + 1), fetch)
        bar.close()

    async def _fetch_page(
        self, resource: str, base: str, page: int, kind: str, done: set[int]
    ) -> dict[str, str] | None:
        if page in done and page != 1:
            return {}
        got = await self._get_json(f"{base}?page={page}&per_page={PER_PAGE}", list)
        if got is None:
            return None
        items, headers = got
        batch = Batch()
        self._normalize_items(resource, items, batch)  # type: ignore[arg-type]
        batch.marks.append((kind, page))
        await self.writer.put(batch)
        return headers

    async def _crawl_sublists(self, parent: str, child: str) -> None:
        kind = f"sub:{child}"
        done = await self._done(kind)
        rows = await self.db.execute_fetchall(
            f"SELECT id FROM {RESOURCES[parent].table} ORDER BY id"
        )
        todo = [r[0] for r in rows if r[0] not in done]
        bar = self.progress.phase(f"{child} of {parent}", len(todo))
        parent_path = RESOURCES[parent].path
        child_path = RESOURCES[child].path

        async def fetch(parent_id: object) -> None:
            batch = Batch()
            url = f"{API}/{parent_path}/{parent_id}/{child_path}/"
            async for items in self._pages(url):
                self._normalize_items(child, items, batch, parent_id=parent_id)
            batch.marks.append((kind, int(parent_id)))  # type: ignore[arg-type]
            await self.writer.put(batch)
            bar.advance(1)

        await self._pool(todo, fetch)
        bar.close()

    async def _pages(self, url: str) -> AsyncIterator[list]:
        """Every page of a (short) list, following ``next`` links."""
        page = 1
        while True:
            got = await self._get_json(f"{url}?page={page}&per_page={PER_PAGE}", list)
            if got is None:
                return
            items, headers = got
            yield items  # type: ignore[misc]
            if not _NEXT.search(headers.get("Link", "")):
                return
            page += 1

    async def _crawl_details(self, resource: str) -> None:
        res = RESOURCES[resource]
        rows = await self.db.execute_fetchall(
            f"SELECT id FROM {res.table} WHERE detail IS NULL ORDER BY id"
        )
        todo = [r[0] for r in rows]
        bar = self.progress.phase(f"{resource} details", len(todo))

        async def fetch(obj_id: object) -> None:
            got = await self._get_json(f"{API}/{res.path}/{obj_id}/", dict)
            if got is not None:
                batch = Batch()
                self._normalize_items(resource, [got[0]], batch)
                await self.writer.put(batch)
            bar.advance(1)

        await self._pool(todo, fetch)
        bar.close()
