"""The initial (and refreshing) full crawl of an upstream Patchwork.

Phases, in order: the API index and the upstream's 404 page; every page of
every list (``per_page=250``); the ids and ordering of the patch states in
use (:mod:`sync.states`); every page of each patch's and cover's
comments and each patch's checks; the details that lists leave out (a
patch's ``content``, ``diff`` and ``headers``; a cover's); and last, a
sweep for objects upstream no longer lists.

Every unit of work (a list page, a sub-list, a detail) is written to the
mirror in the same transaction as a mark saying it is done, so an
interrupted sync, run again, continues where it stopped and never
duplicates: all writes are upserts by upstream id.  A run that finds the
previous pass complete starts a new pass, refreshing everything.

Lists in id order are fetched concurrently, page by page.  The events
list is newest first, so new events shift older ones towards later
pages; it is fetched in order, following ``next`` links, so that a shift
can only make an event come twice, never be missed.

The sweep removes what upstream deleted (or made invisible to the sync
identity: a bundle made private), cascading as upstream does.  Since a
list can shift while it is crawled, an object missing from it is only
deleted once its own URL answers 404.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiosqlite
import orjson

from mirror import store
from mirror.resources import RESOURCES
from mirror.store import Batch
from mirror.versions import LATEST
from sync import states
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
#: Lists that may be refused to the sync identity (anonymous: people, users).
MAY_BE_REFUSED = frozenset(("users", "people"))
#: Sub-lists crawled per object: (parent resource, child resource).
SUBLISTS = (("patches", "patch_comments"), ("patches", "checks"), ("covers", "cover_comments"))

_LAST = re.compile(r'<([^>]*)>;\s*rel="last"')
_NEXT = re.compile(r'<([^>]*)>;\s*rel="next"')
_PAGE = re.compile(r"[?&]page=([0-9]+)")

T = TypeVar("T")


class SyncError(Exception):
    """The sync cannot go on (wrong upstream, refused credentials...)."""


class Refused(SyncError):
    """Upstream answered 401 or 403."""


@dataclass
class Report:
    requests: int = 0
    objects: int = 0
    deleted: int = 0
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

    async def _unless_failed(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable``, raising at once if the writer has failed."""
        assert self._task is not None
        waiter = asyncio.ensure_future(awaitable)
        done, _ = await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            self._task.result()  # raises the writer's error
            raise SyncError("the writer stopped")
        return waiter.result()

    async def put(self, batch: Batch) -> None:
        await self._unless_failed(self._queue.put(batch))

    async def flush(self) -> None:
        """Wait until everything put so far is committed."""
        await self._unless_failed(self._queue.join())

    async def close(self) -> None:
        """Commit what is queued and stop (surfacing a failure, if any)."""
        if self._task is None:
            return
        if not self._task.done():
            await self._unless_failed(self._queue.put(None))
        await self._task

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            taken, stop = 1, item is None
            combined = Batch() if item is None else item
            while not stop and not self._queue.empty() and len(combined) < 5000:
                nxt = self._queue.get_nowait()
                taken += 1
                if nxt is None:
                    stop = True
                else:
                    combined.extend(nxt)
            self.objects += len(combined)
            try:
                await store.write(self._db, combined)
            finally:
                for _ in range(taken):
                    self._queue.task_done()
            if stop:
                return


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
            await self._learn_states()
            for parent, child in SUBLISTS:
                await self._crawl_sublists(parent, child)
            for resource in LISTS:
                if RESOURCES[resource].detail_keys:
                    await self._crawl_details(resource)
            await self.writer.flush()
            for resource in LISTS:
                if resource != "events":
                    await self._sweep(resource)
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

    async def _get(
        self, path: str, expect: type, *, refusable: bool = False
    ) -> tuple[Any, dict[str, str]] | None:
        """GET a JSON document; ``None`` if upstream has no such thing (404).

        A 401/403 raises :class:`Refused`: the credentials were revoked or
        the identity may not see this; either way, data would be missing.
        """
        resp = await self.source.get(path)
        self.report.requests += 1
        if resp.status == 404:
            return None
        if resp.status in (401, 403):
            try:
                reason = resp.json().get("detail", "")
            except (orjson.JSONDecodeError, AttributeError):
                reason = ""
            raise Refused(f"upstream refused GET {path} ({resp.status} {reason})".strip())
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

    async def _pool(self, items: Iterable[T], work: Callable[[T], Awaitable[None]]) -> None:
        """Run ``work`` over ``items``, ``concurrency`` at a time; one failure stops all."""
        iterator = iter(items)

        async def worker() -> None:
            for item in iterator:
                await work(item)

        async with asyncio.TaskGroup() as group:
            for _ in range(self.concurrency):
                group.create_task(worker())

    def _normalize(
        self, resource: str, items: list[Any], batch: Batch, parent_id: int | None = None
    ) -> list[int]:
        """Normalise ``items`` into ``batch``; the ids of those kept."""
        ids = []
        for item in items:
            try:
                ids.append(self.normalizer.add(resource, item, batch, parent_id=parent_id))
            except BadUpstreamData as exc:
                log.warning("skipping a malformed %s object: %s", resource, exc)
        return ids

    # -- phases ---------------------------------------------------------------

    async def _probe_index(self) -> None:
        try:
            got = await self._get(f"{API}/", dict)
        except Refused as exc:
            raise SyncError(f"{exc}: check [upstream] token") from None
        if got is None or "patches" not in got[0]:
            raise SyncError(f"{self.base_url} does not serve the Patchwork API {LATEST}")

    async def _capture_404(self) -> None:
        """Keep the upstream's own 404 page, to answer unknown paths alike."""
        resp = await self.source.get(PROBE_404)
        self.report.requests += 1
        ctype = resp.headers.get("Content-Type", "")
        body = resp.body.decode("utf-8", "replace")
        if resp.status == 404 and ctype.startswith("text/html") and PROBE_404 in body:
            before, _, after = body.partition(PROBE_404)
            await store.set_meta(self.db, "upstream.404", orjson.dumps([before, after]).decode())

    async def _learn_states(self) -> None:
        """Give the mirror's states upstream's ids and ordering (see sync.states)."""
        in_use = await store.states_in_use(self.db)
        if not in_use:
            return

        async def get(path: str) -> list[Any] | None:
            try:
                got = await self._get(path, list)
            except UpstreamError:
                return None
            return None if got is None else got[0]

        try:
            learnt = await states.probe(get, API, in_use, await store.states(self.db))
        except states.NoAnswer:
            log.info("upstream does not answer state probes; keeping the states known")
            return
        if await store.set_states(self.db, learnt, in_use):
            log.info("learnt upstream's states: %s", ", ".join(s[1] for s in learnt))

    async def _crawl_list(self, resource: str) -> None:
        if await self._done("listed") & {LISTS.index(resource)}:
            return  # crawled whole earlier in this pass
        res = RESOURCES[resource]
        url = f"{API}/{res.path}/"
        try:
            first = await self._get(f"{url}?page=1&per_page={PER_PAGE}", list)
        except Refused:
            if resource not in MAY_BE_REFUSED:
                raise
            self.report.skipped.append(resource)
            log.info("%s: not visible to the sync identity; skipped", resource)
            return
        if first is None:
            raise UpstreamError(f"GET {url}: HTTP 404")
        await self._store_page(resource, 1, first[0])
        if res.default_order == "id":
            await self._crawl_pages_concurrently(resource, url, first[1])
        else:
            await self._crawl_pages_in_order(resource, url, first[1])
        batch = Batch()
        batch.marks.append(("listed", LISTS.index(resource)))
        await self.writer.put(batch)

    async def _crawl_pages_concurrently(
        self, resource: str, url: str, first_headers: dict[str, str]
    ) -> None:
        """An id-ordered list: pages stay put, so fetch them side by side."""
        done = await self._done(f"list:{resource}")
        last = _last_page(first_headers.get("Link")) or 1
        bar = self.progress.phase(f"{resource} pages", last)
        bar.advance(1)

        async def fetch(page: int) -> None:
            if page not in done:
                got = await self._get(f"{url}?page={page}&per_page={PER_PAGE}", list)
                if got is not None:
                    await self._store_page(resource, page, got[0])
            bar.advance(1)

        await self._pool(range(2, last + 1), fetch)
        # Objects created meanwhile may have added pages past the last one.
        page = last
        while True:
            got = await self._get(f"{url}?page={page}&per_page={PER_PAGE}", list)
            if got is None or not _NEXT.search(got[1].get("Link", "")):
                break
            page += 1
            more = await self._get(f"{url}?page={page}&per_page={PER_PAGE}", list)
            if more is None:
                break
            await self._store_page(resource, page, more[0])
        bar.close()

    async def _crawl_pages_in_order(
        self, resource: str, url: str, first_headers: dict[str, str]
    ) -> None:
        """A newest-first list: follow ``next`` so shifts cannot hide items."""
        bar = self.progress.phase(f"{resource} pages", _last_page(first_headers.get("Link")) or 1)
        bar.advance(1)
        headers, page = first_headers, 1
        while _NEXT.search(headers.get("Link", "")):
            page += 1
            got = await self._get(f"{url}?page={page}&per_page={PER_PAGE}", list)
            if got is None:
                break
            await self._store_page(resource, page, got[0])
            headers = got[1]
            bar.advance(1)
        bar.close()

    async def _store_page(self, resource: str, page: int, items: list[Any]) -> None:
        batch = Batch()
        ids = self._normalize(resource, items, batch)
        batch.marks.append((f"list:{resource}", page))
        batch.marks.extend((f"seen:{resource}", obj_id) for obj_id in ids)
        await self.writer.put(batch)

    async def _crawl_sublists(self, parent: str, child: str) -> None:
        kind = f"sub:{child}"
        done = await self._done(kind)
        rows = await self.db.execute_fetchall(
            f"SELECT id FROM {RESOURCES[parent].table} ORDER BY id"
        )
        todo = [r[0] for r in rows if r[0] not in done]
        bar = self.progress.phase(f"{child} of {parent}", len(todo))
        url = f"{API}/{RESOURCES[parent].path}/{{}}/{RESOURCES[child].path}/"

        async def fetch(parent_id: int) -> None:
            batch = Batch()
            ids: list[int] = []
            page = 1
            while True:
                page_url = f"{url.format(parent_id)}?page={page}&per_page={PER_PAGE}"
                got = await self._get(page_url, list)
                if got is None:
                    if page == 1:  # the parent is gone upstream
                        batch.deletions.append((parent, parent_id))
                        self.report.deleted += 1
                    break  # else the list shrank under us: keep what we have
                ids.extend(self._normalize(child, got[0], batch, parent_id=parent_id))
                if not _NEXT.search(got[1].get("Link", "")):
                    # The whole list: children not in it are gone upstream.
                    batch.children.append((child, parent_id, ids))
                    break
                page += 1
            batch.marks.append((kind, parent_id))
            await self.writer.put(batch)
            bar.advance(1)

        await self._pool(todo, fetch)
        bar.close()

    async def _crawl_details(self, resource: str) -> None:
        res = RESOURCES[resource]
        rows = await self.db.execute_fetchall(
            f"SELECT id FROM {res.table} WHERE detail IS NULL ORDER BY id"
        )
        todo = [r[0] for r in rows]
        bar = self.progress.phase(f"{resource} details", len(todo))

        async def fetch(obj_id: int) -> None:
            await self.writer.put(await self._refetch(resource, obj_id))
            bar.advance(1)

        await self._pool(todo, fetch)
        bar.close()

    async def _refetch(self, resource: str, obj_id: int) -> Batch:
        """An object's detail as a batch: an upsert, or a deletion if gone."""
        batch = Batch()
        got = await self._get(f"{API}/{RESOURCES[resource].path}/{obj_id}/", dict)
        if got is None:
            batch.deletions.append((resource, obj_id))
            self.report.deleted += 1
        else:
            self._normalize(resource, [got[0]], batch)
            batch.marks.append((f"seen:{resource}", obj_id))
        return batch

    async def _sweep(self, resource: str) -> None:
        """Check every object the pass did not see listed; delete the gone."""
        if not await self._done("listed") & {LISTS.index(resource)}:
            return  # not listed whole (refused): nothing to compare with
        table = RESOURCES[resource].table
        rows = await self.db.execute_fetchall(
            f"SELECT id FROM {table} WHERE id NOT IN (SELECT id FROM sync_marks WHERE kind = ?)",
            (f"seen:{resource}",),
        )
        unseen = [r[0] for r in rows]
        if not unseen:
            return
        bar = self.progress.phase(f"{resource} no longer listed", len(unseen))

        async def check(obj_id: int) -> None:
            await self.writer.put(await self._refetch(resource, obj_id))
            bar.advance(1)

        await self._pool(unseen, check)
        await self.writer.flush()
        bar.close()
