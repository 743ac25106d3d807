"""The initial crawl of an upstream Patchwork.

Phases, in order: the API index and the upstream's 404 page; every page
of every list (``per_page=250``), **events first**; the ids and ordering
of the patch states in use (:mod:`sync.states`); the comment and check
lists that can hold anything; the details that lists leave out (a
patch's ``content``, ``diff`` and ``headers``; a cover's); a sweep for
objects upstream no longer lists; and last, each bundle's patch order,
which only its mbox shows.

Events come first for two reasons.  The newest event then is where the
event follower (:mod:`sync.events`) starts: everything the crawl reads
afterwards is at least as new, and every change after it arrives as an
event.  And events tell which sub-lists can hold anything: a check, a
comment made since Patchwork has had comment events, is announced by an
event naming its parent.  A parent whose creation event is there, and no
event names, has no comments or checks to fetch (:func:`needed_parents`);
that skips most of them.

Every unit of work (a list page, a sub-list, a detail) is written to the
mirror in the same transaction as a mark saying it is done, so an
interrupted crawl, run again, continues where it stopped and never
duplicates: all writes are upserts by upstream id.

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
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiosqlite
import orjson

from mirror import store
from mirror.resources import RESOURCES
from mirror.store import REFUSED, Batch
from mirror.versions import LATEST
from sync import states
from sync.events import CURSOR
from sync.fetch import (
    API,
    MAY_BE_REFUSED,
    PER_PAGE,
    Fetcher,
    Refused,
    SyncError,
    has_next,
    last_page,
    list_url,
    pool,
)
from sync.progress import Progress
from sync.refresh import Refresher, stale_bundle_orders
from sync.upstream import Source, UpstreamError

log = logging.getLogger(__name__)

#: Probe path used to learn the upstream's 404 page.
PROBE_404 = f"{API}/patchwork-gateway-404-probe/"

#: Top-level lists, in crawl order: events first (see above), then
#: referenced objects before those referring to them (the descriptions'
#: ``crawl_rank``).
LISTS = tuple(
    name
    for name, res in sorted(RESOURCES.items(), key=lambda item: item[1].crawl_rank or 0)
    if res.crawl_rank is not None
)


@dataclass(frozen=True)
class SubList:
    """A per-parent list, and the events that announce its items (from the
    child's description: ``Resource.announced``)."""

    parent: str
    child: str
    #: The event category creating the parent, and its column in events.
    created: str
    column: str
    #: The event category announcing an item, and the item's key in it.
    announced: str
    key: str
    #: Whether the announcing events are as old as the creating ones.
    as_old_as_creation: bool


SUBLISTS = tuple(
    SubList(
        res.parent.resource,
        name,
        res.announced.parent_created,
        res.announced.parent_column,
        res.announced.created,
        res.announced.key,
        res.announced.as_old_as_parent,
    )
    # (The patches' lists first: they are most of the work.)
    for name, res in sorted(
        RESOURCES.items(),
        key=lambda item: (
            -(RESOURCES[item[1].parent.resource].crawl_rank or 0) if item[1].parent else 0
        ),
    )
    if res.parent is not None and res.announced is not None
)

T = TypeVar("T")

__all__ = ["PROBE_404", "Crawler", "Refused", "Report", "SyncError"]


async def probe_index(fetcher: Fetcher, base_url: str) -> None:
    """Whether ``base_url`` serves Patchwork's API to the sync identity;
    raises :class:`SyncError` (or ``UpstreamError``) saying why not."""
    try:
        got = await fetcher.get(f"{API}/", dict)
    except Refused as exc:
        raise SyncError(f"{exc}: check [upstream] token") from None
    if got is None or "patches" not in got[0]:
        raise SyncError(f"{base_url} does not serve the Patchwork API {LATEST}")


@dataclass
class Report:
    requests: int = 0
    objects: int = 0
    deleted: int = 0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


async def needed_parents(db: aiosqlite.Connection, sub: SubList) -> set[int]:
    """The parents whose ``sub`` list may hold something, judged by events.

    An item's announcing event names its parent: such parents are needed.
    Any other parent has no items if announcing events cover its whole
    life: when the announced ids run from 1 without a gap (every item
    there ever was has its event), or when its own creation event is
    there and no older than the first announcing event (or, for checks,
    at all).  Parents older than the events (an instance upgraded from a
    Patchwork without them, events purged by age) are fetched.
    """
    parents = RESOURCES[sub.parent].table
    rows = await db.execute_fetchall(
        f"SELECT {sub.column}, json_extract(doc, '$.{sub.key}'), date FROM events "
        "WHERE category = ?",
        (sub.announced,),
    )
    named = {r[0] for r in rows if r[0] is not None}
    items = {r[1] for r in rows if type(r[1]) is int}
    gapless = bool(items) and len(items) == max(items)
    first = min((r[2] for r in rows if r[2]), default=None)
    rows = await db.execute_fetchall(
        f"SELECT {sub.column}, min(date) FROM events WHERE category = ? "
        f"AND {sub.column} IS NOT NULL GROUP BY {sub.column}",
        (sub.created,),
    )
    created: dict[int, str] = {r[0]: r[1] for r in rows}
    needed = set(named)
    for (parent_id,) in await db.execute_fetchall(f"SELECT id FROM {parents}"):
        if parent_id in named or gapless:
            continue
        born = created.get(parent_id)
        if born is None or not (sub.as_old_as_creation or (first is not None and born >= first)):
            needed.add(parent_id)
    return needed


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
            try:
                self.objects += await store.write(self._db, combined)
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
        exhaustive: bool = False,
    ) -> None:
        self.db = db
        self.base_url = base_url
        self.fetcher = Fetcher(source, base_url, concurrency=concurrency)
        self.concurrency = concurrency
        self.progress = progress or Progress()
        self.writer = Writer(db)
        self.report = Report()
        #: Fetch every comment and check list, whatever events say (tests
        #: compare the two).
        self.exhaustive = exhaustive

    # -- entry point ------------------------------------------------------

    async def run(self) -> Report:
        started = time.monotonic()
        await check_origin(self.db, self.base_url)
        await self._begin_pass()
        self.writer.start()
        try:
            await self._probe_index()
            await self._capture_404()
            for resource in LISTS:
                await self._crawl_list(resource)
            await self.writer.flush()
            await learn_states(self.db, self.fetcher)
            for sub in SUBLISTS:
                await self._crawl_sublists(sub)
            for resource in LISTS:
                if RESOURCES[resource].detail_keys:
                    await self._crawl_details(resource)
            await self.writer.flush()
            for resource in LISTS:
                if resource != "events":
                    await self._sweep(resource)
            await self._crawl_bundle_orders()
            await self.writer.flush()
        finally:
            await self.writer.close()
            self.report.requests = self.fetcher.requests
        await store.set_meta(self.db, "sync.state", "complete")
        await store.set_meta(self.db, "sync.completed_at", datetime.now(UTC).isoformat())
        self.report.objects = self.writer.objects
        self.report.seconds = time.monotonic() - started
        return self.report

    async def _begin_pass(self) -> None:
        state = await store.get_meta(self.db, "sync.state")
        if state == "running":
            if await self.db.execute_fetchall("SELECT 1 FROM sync_marks LIMIT 1"):
                self.progress.note("resuming the interrupted initial sync")
            return
        if state == "complete":
            log.info("previous pass complete; crawling everything again")
        await self.db.execute("DELETE FROM sync_marks")
        await store.set_meta(self.db, "sync.state", "running")

    # -- helpers ------------------------------------------------------------

    async def _set_meta(self, key: str, value: str) -> None:
        """A meta value set through the writer: its transaction may be open."""
        batch = Batch()
        batch.meta[key] = value
        await self.writer.put(batch)
        await self.writer.flush()

    async def _done(self, kind: str) -> set[int]:
        rows = await self.db.execute_fetchall("SELECT id FROM sync_marks WHERE kind = ?", (kind,))
        return {r[0] for r in rows}

    async def _pool(self, items: Iterable[T], work: Any) -> None:
        await pool(items, work, self.concurrency)

    # -- phases ---------------------------------------------------------------

    async def _probe_index(self) -> None:
        await probe_index(self.fetcher, self.base_url)

    async def _capture_404(self) -> None:
        """Keep the upstream's own 404 page, to answer unknown paths alike."""
        resp = await self.fetcher.source.get(PROBE_404)
        self.fetcher.requests += 1
        ctype = resp.headers.get("Content-Type", "")
        body = resp.body.decode("utf-8", "replace")
        if resp.status == 404 and ctype.startswith("text/html") and PROBE_404 in body:
            before, _, after = body.partition(PROBE_404)
            page = orjson.dumps([before, after]).decode()
            if await store.get_meta(self.db, "upstream.404") != page:
                await self._set_meta("upstream.404", page)

    async def _crawl_list(self, resource: str) -> None:
        if await self._done("listed") & {LISTS.index(resource)}:
            return  # crawled whole earlier in this pass
        res = RESOURCES[resource]
        url = list_url(resource)
        try:
            first = await self.fetcher.get(f"{url}?page=1&per_page={PER_PAGE}", list)
        except Refused:
            if resource not in MAY_BE_REFUSED:
                raise
            self.report.skipped.append(resource)
            self.fetcher.refused.add(resource)
            log.info("%s: not visible to the sync identity; skipped", resource)
            # The server forwards reads of these: the mirror cannot answer them.
            refused = sorted(self.fetcher.refused)
            await self._set_meta(REFUSED, orjson.dumps(refused).decode())
            return
        if first is None:
            raise UpstreamError(f"GET {url}: HTTP 404")
        meta = {}
        if resource == "events" and await store.get_meta(self.db, CURSOR) is None:
            # Where the follower starts: everything after is read later.
            dates = [e.get("date") for e in first[0] if isinstance(e, dict)]
            newest = max((d for d in dates if isinstance(d, str)), default=None)
            if newest:
                meta[CURSOR] = newest
        await self._store_page(resource, 1, first[0], meta)
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
        last = last_page(first_headers.get("Link")) or 1
        bar = self.progress.phase(f"{resource} pages", last)
        bar.advance(1)

        async def fetch(page: int) -> None:
            if page not in done:
                got = await self.fetcher.get(f"{url}?page={page}&per_page={PER_PAGE}", list)
                if got is not None:
                    await self._store_page(resource, page, got[0])
            bar.advance(1)

        await self._pool(range(2, last + 1), fetch)
        # Objects created meanwhile may have added pages past the last one.
        page = last
        while True:
            got = await self.fetcher.get(f"{url}?page={page}&per_page={PER_PAGE}", list)
            if got is None or not has_next(got[1]):
                break
            page += 1
            more = await self.fetcher.get(f"{url}?page={page}&per_page={PER_PAGE}", list)
            if more is None:
                break
            await self._store_page(resource, page, more[0])
        bar.close()

    async def _crawl_pages_in_order(
        self, resource: str, url: str, first_headers: dict[str, str]
    ) -> None:
        """A newest-first list: follow ``next`` so shifts cannot hide items."""
        bar = self.progress.phase(f"{resource} pages", last_page(first_headers.get("Link")) or 1)
        bar.advance(1)
        headers, page = first_headers, 1
        while has_next(headers):
            page += 1
            got = await self.fetcher.get(f"{url}?page={page}&per_page={PER_PAGE}", list)
            if got is None:
                break
            await self._store_page(resource, page, got[0])
            headers = got[1]
            bar.advance(1)
        bar.close()

    async def _store_page(
        self, resource: str, page: int, items: list[Any], meta: dict[str, str] | None = None
    ) -> None:
        batch = Batch()
        ids = self.fetcher.normalize(resource, items, batch)
        batch.marks.append((f"list:{resource}", page))
        batch.marks.extend((f"seen:{resource}", obj_id) for obj_id in ids)
        batch.meta.update(meta or {})
        await self.writer.put(batch)

    async def _crawl_sublists(self, sub: SubList) -> None:
        kind = f"sub:{sub.child}"
        done = await self._done(kind)
        if self.exhaustive:
            rows = await self.db.execute_fetchall(f"SELECT id FROM {RESOURCES[sub.parent].table}")
            needed = {r[0] for r in rows}
        else:
            needed = await needed_parents(self.db, sub)
        todo = sorted(needed - done)
        bar = self.progress.phase(f"{sub.child} of {sub.parent}", len(todo))

        async def fetch(parent_id: int) -> None:
            batch = Batch()
            if await self.fetcher.sublist(sub.child, parent_id, batch) is None:
                self.report.deleted += 1
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
        if await self.fetcher.detail(resource, obj_id, batch) is None:
            self.report.deleted += len(batch.deletions)
        else:
            batch.marks.append((f"seen:{resource}", obj_id))
        return batch

    async def _crawl_bundle_orders(self) -> None:
        """The order of every bundle the mirror lacks the order of (all, at
        first; after an interruption, those not read yet)."""
        refresher = Refresher(self.db, self.fetcher)
        (total,) = next(iter(await self.db.execute_fetchall("SELECT count(*) FROM bundles")))
        bar = self.progress.phase("bundle orders", total)

        async def read(item: tuple[int, str]) -> None:
            batch = Batch()
            await refresher.read_bundle_orders([item], batch)
            await self.writer.put(batch)
            bar.advance(1)

        after = 0
        while True:
            rows = list(
                await self.db.execute_fetchall(
                    "SELECT id, doc FROM bundles WHERE id > ? ORDER BY id LIMIT 500", (after,)
                )
            )
            if not rows:
                break
            after = rows[-1][0]
            stale = await stale_bundle_orders(self.db, {r[0]: orjson.loads(r[1]) for r in rows})
            bar.advance(len(rows) - len(stale))
            await pool(sorted(stale.items()), read, 1)  # (see read_bundle_orders)
        bar.close()

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


async def check_origin(db: aiosqlite.Connection, base_url: str) -> None:
    """Refuse to mix two upstreams in one mirror."""
    known = await store.get_meta(db, "upstream.url")
    if known and known.rstrip("/") != base_url.rstrip("/"):
        raise SyncError(f"this mirror holds {known}, not {base_url}; use another storage path")
    if known != base_url.rstrip("/"):
        await store.set_meta(db, "upstream.url", base_url.rstrip("/"))


async def learn_states(db: aiosqlite.Connection, fetcher: Fetcher) -> None:
    """Give the mirror's states upstream's ids and ordering (see sync.states)."""
    in_use = await store.states_in_use(db)
    if not in_use:
        return

    async def get(path: str) -> list[Any] | None:
        try:
            got = await fetcher.get(path, list)
        except UpstreamError:
            return None
        return None if got is None else got[0]

    try:
        learnt = await states.probe(get, API, in_use, await store.states(db))
    except states.NoAnswer:
        log.info("upstream does not answer state probes; keeping the states known")
        return
    if await store.set_states(db, learnt, in_use):
        log.info("learnt upstream's states: %s", ", ".join(s[1] for s in learnt))
