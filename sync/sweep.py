"""Sweeps: finding the changes upstream announces with no event.

``archived``, ``commit_ref``, ``pull_url``, names, a comment's
``addressed`` (on some versions), projects, people, users and bundles
change without events, and a deleted object takes its events with it.
Only reading the lists again finds those.  A sweep is made of *lanes*,
each a listing read page by page (``per_page=250``) and compared with the
mirror:

* every object listed is merged in; only what differs is written;
* mirrored objects in the stretch of ids a page covers that it does not
  list (or, for a filtered listing, that the mirror says should match)
  are fetched one by one: each has changed or is gone;
* a bundle listed new, or with other patches than its stored order lists,
  has its order read again from its mbox (``sync.refresh``);
* the ``events`` lane walks the events older than the follower's window
  by date, adding any it lacks (applied like new ones) and removing those
  upstream no longer has (purged, or gone with their object);
* the sub-lists lanes re-read, parent by parent, the complete lists of the
  parents the mirror holds children of (comments of patches and covers;
  checks of patches): children a list no longer shows are gone, with
  their events.  Nothing else finds a comment or check an admin deleted.

Lanes are tiered: the newest objects and the not-archived patches are
read often, every list in full at most every ``interval`` seconds, people,
users, comments, checks and old events slowly.  Requests are paced to a
budget per minute; a lane with a minimum share gets it even when others
are busy.
One step holds the sync's lock for its reads and its write, so a sweep
never writes an older reading over what the follower wrote since.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiosqlite

from mirror import store
from mirror.resources import RESOURCES
from mirror.store import Batch
from sync.backoff import Backoff
from sync.events import CURSOR, Follower, shifted
from sync.fetch import (
    MAY_BE_REFUSED,
    PER_PAGE,
    RECOVERABLE,
    Fetcher,
    Refused,
    has_next,
    list_url,
    pool,
)

log = logging.getLogger(__name__)

#: Parents a sub-lists lane reads from the mirror at a time.
PARENT_CHUNK = 1000
#: Bundle mboxes a step reads at most, to learn the order of bundles new or
#: changed (see sync.refresh); the others wait for the lane's next round.
BUNDLE_ORDERS_PER_STEP = 20
#: Public bundles whose mbox the bundle-orders lane reads a step.
ORDERS_CHUNK = 5


@dataclass
class Lane:
    """One listing swept page by page, and where it has got to."""

    name: str
    #: A resource name, or "sublists" / "events" for the special lanes.
    resource: str
    query: tuple[tuple[str, str], ...] = ()
    #: Listed newest first (``order=-id``).
    descending: bool = False
    #: SQL condition on mirrored rows standing for the listing's filter.
    where: str = ""
    #: Pages per round (the newest ones), or every page.
    max_pages: int | None = None
    #: Seconds from the start of one round to the start of the next.
    period: float = 60.0
    #: Share of requests the lane gets when it has work, whatever else waits.
    min_share: float = 0.0
    #: Run by ``sync --once`` (lanes that other lanes cover are not).
    in_full_round: bool = True
    #: First round one period after start (see :meth:`Sweeper.start`).
    slow: bool = False
    #: A sub-lists lane's child resources, visited in this order.
    children: tuple[str, ...] = ()
    # -- progress ------------------------------------------------------------
    page: int = 0  # next page of the round; 0: between rounds
    bound: Any = None  # where the previous page of the round ended
    started: float = -math.inf
    served: float = 0.0  # recent requests, decaying
    todo: list[tuple[str, int]] | None = None  # a sub-lists lane's next parents
    enabled: bool = True


def default_lanes(interval: float, hot_interval: float) -> list[Lane]:
    """The lanes, highest priority first."""
    return [
        Lane("newest patches", "patches", (("order", "-id"),), True, max_pages=1,
             period=hot_interval, in_full_round=False),
        Lane("newest covers", "covers", (("order", "-id"),), True, max_pages=1,
             period=hot_interval, in_full_round=False),
        Lane("newest series", "series", (("order", "-id"),), True, max_pages=1,
             period=hot_interval, in_full_round=False),
        Lane("projects", "projects", period=interval / 2),
        Lane("bundles", "bundles", period=interval / 2),
        Lane("active patches", "patches", (("archived", "false"), ("order", "-id")), True,
             where="archived = 0", max_pages=20, period=interval / 2, in_full_round=False),
        Lane("patches", "patches", period=interval, min_share=0.2),
        Lane("covers", "covers", period=interval, min_share=0.05),
        Lane("series", "series", period=interval, min_share=0.05),
        Lane("users", "users", period=interval * 5, min_share=0.02, slow=True),
        Lane("people", "people", period=interval * 5, min_share=0.05, slow=True),
        # Patchwork 3.x announces every comment save (``addressed`` too):
        # this lane is for what it does not (deletions, other versions).
        Lane("comments", "sublists", children=("patch_comments", "cover_comments"),
             period=interval * 60, min_share=0.05, slow=True),
        # Checks are only ever created, and announced: this lane is for those
        # an admin deleted, which is rare.  A request per patch with checks:
        # every two hours (default interval) on a small instance, which costs
        # nearly nothing; a large one's round outlasts any period, and the
        # share sets the pace (1M patches, 30% with checks: about 65 days).
        Lane("checks", "sublists", children=("checks",),
             period=interval * 60, min_share=0.05, slow=True),
        Lane("events", "events", period=interval * 30, min_share=0.05, slow=True),
        # A bundle's owner may reorder its patches in Patchwork's web pages,
        # which neither an event nor the API shows: every public bundle's
        # mbox is read again, slowly.
        Lane("bundle orders", "bundle orders", period=interval * 30, min_share=0.02, slow=True,
             in_full_round=False),
    ]  # fmt: skip


class Sweeper:
    def __init__(
        self,
        db: aiosqlite.Connection,
        fetcher: Fetcher,
        follower: Follower,
        lock: asyncio.Lock,
        *,
        budget: float = 60.0,
        interval: float = 120.0,
        hot_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.fetcher = fetcher
        self.follower = follower
        self.lock = lock
        self.lanes = default_lanes(interval, hot_interval)
        self.seconds_per_request = 60.0 / budget
        self.clock = clock
        #: Objects changed, by lane (for the status and tests).
        self.changed: dict[str, int] = {}
        self.rounds: dict[str, int] = {}

    # -- scheduling ------------------------------------------------------------

    def start(self, fresh: bool) -> None:
        """Schedule first rounds: after a crawl (``fresh``) everything was
        just read, so every lane waits a period; after a restart the slow
        lanes do, and the rest look at once for what changed meanwhile."""
        now = self.clock()
        for lane in self.lanes:
            if fresh or lane.slow:
                lane.started = now

    def _ready(self, lane: Lane, now: float) -> bool:
        return lane.enabled and (lane.page > 0 or now - lane.started >= lane.period)

    def choose(self, now: float) -> Lane | None:
        """The lane to step next: a starved one, else the first ready."""
        ready = [lane for lane in self.lanes if self._ready(lane, now)]
        if not ready:
            return None
        total = sum(lane.served for lane in self.lanes) + 1
        starved = [lane for lane in ready if lane.served < lane.min_share * total]
        if starved:
            return max(starved, key=lambda lane: lane.min_share * total - lane.served)
        return ready[0]

    def next_ready(self, now: float) -> float:
        """Seconds until some lane is ready."""
        waits = [lane.started + lane.period - now for lane in self.lanes if lane.enabled]
        return max(0.0, min(waits, default=60.0))

    async def run(
        self,
        on_error: Callable[[BaseException], None] | None = None,
        on_recovered: Callable[[], None] | None = None,
    ) -> None:
        """Sweep forever within the budget; back off while upstream fails."""
        next_at = self.clock()
        backoff = Backoff(5.0)
        while True:
            now = self.clock()
            if next_at > now:
                await asyncio.sleep(next_at - now)
                now = self.clock()
            lane = self.choose(now)
            if lane is None:
                await asyncio.sleep(min(self.next_ready(now), 5.0))
                continue
            before = self.fetcher.requests
            try:
                await self.step(lane)
            except RECOVERABLE as exc:
                if on_error is not None:
                    on_error(exc)
                next_at = self.clock() + backoff.failed()
                continue
            if backoff and on_recovered is not None:
                on_recovered()
            backoff.succeeded()
            spent = self.fetcher.requests - before
            for other in self.lanes:
                other.served *= 0.99
            lane.served += spent
            next_at = max(next_at, now) + spent * self.seconds_per_request

    async def full_round(self) -> None:
        """Every lane that ``sync --once`` runs, one whole round, unpaced."""
        for lane in self.lanes:
            if not lane.in_full_round or not lane.enabled:
                continue
            lane.page, lane.bound, lane.todo = 0, None, None
            await self.step(lane)
            while lane.page > 0:
                await self.step(lane)

    # -- one step ------------------------------------------------------------

    async def step(self, lane: Lane) -> None:
        """One page (or one parent) of ``lane``, compared and written."""
        if lane.page == 0:
            lane.page, lane.bound, lane.todo = 1, None, None
            lane.started = self.clock()
        started, page = time.monotonic(), lane.page
        async with self.lock:
            if lane.children:
                batch = await self._sublists_step(lane)
            elif lane.resource == "bundle orders":
                batch = await self._orders_step(lane)
            elif lane.resource == "events":
                batch = await self._events_step(lane)
            else:
                batch = await self._list_step(lane)
            await self.follower.refresher.complete_new_objects(batch)
            await self.follower.refresher.learn_bundle_orders(batch, BUNDLE_ORDERS_PER_STEP)
            changed = await store.write(self.db, batch)
        if changed:
            self.changed[lane.name] = self.changed.get(lane.name, 0) + changed
        seconds = round(time.monotonic() - started, 3)
        log.info(
            "sweep of %s, page %d: %d objects changed, %.2fs",
            lane.name,
            page,
            changed,
            seconds,
            extra={
                "step": "sweep",
                "lane": lane.name,
                "page": page,
                "changed": changed,
                "seconds": seconds,
            },
        )
        if lane.page == 0:
            self.rounds[lane.name] = self.rounds.get(lane.name, 0) + 1

    def _end_round(self, lane: Lane) -> None:
        lane.page, lane.bound, lane.todo = 0, None, None

    async def _list_step(self, lane: Lane) -> Batch:
        res = RESOURCES[lane.resource]
        if lane.resource in self.fetcher.refused:
            lane.enabled = False
            return Batch()
        query = urlencode([*lane.query, ("page", lane.page), ("per_page", PER_PAGE)])
        try:
            got = await self.fetcher.get(f"{list_url(lane.resource)}?{query}", list)
        except Refused as exc:
            if lane.resource not in MAY_BE_REFUSED:
                raise  # revoked credentials, say: back off and try again
            log.info("%s: not visible to the sync identity (%s); not swept", lane.name, exc)
            self.fetcher.refused.add(lane.resource)
            lane.enabled = False
            return Batch()
        if got is None:
            if lane.page == 1:  # Patchwork has a page 1 of every list it serves
                log.warning("%s: upstream does not serve %s; not swept", lane.name, query)
                lane.enabled = False
            self._end_round(lane)  # else the list shrank under us
            return Batch()
        items, headers = got
        batch = Batch()
        listed = set(self.fetcher.normalize(lane.resource, items, batch))
        last = not has_next(headers)
        more = not last and (lane.max_pages is None or lane.page < lane.max_pages)
        # The stretch of ids this page answers for: from where the previous
        # page ended to its own last id (to the end, on the list's last page).
        conditions: list[str] = []
        args: list[Any] = []
        if lane.bound is not None:
            conditions.append("id < ?" if lane.descending else "id > ?")
            args.append(lane.bound)
        edge = lane.bound
        if listed:
            edge = min(listed) if lane.descending else max(listed)
            if not last:
                conditions.append("id >= ?" if lane.descending else "id <= ?")
                args.append(edge)
        if lane.where:
            conditions.append(lane.where)
        where = " WHERE " + " AND ".join(conditions) if conditions else ""
        rows = await self.db.execute_fetchall(f"SELECT id FROM {res.table}{where}", args)
        unlisted = sorted(r[0] for r in rows if r[0] not in listed)

        async def verify(obj_id: int) -> None:
            await self.fetcher.detail(lane.resource, obj_id, batch)

        await pool(unlisted, verify, self.fetcher.concurrency)
        if more:
            lane.page += 1
            lane.bound = edge
        else:
            self._end_round(lane)
        return batch

    async def _sublists_step(self, lane: Lane) -> Batch:
        """One parent's complete child list, newest parents first, one child
        resource after the other.

        The parents to visit are read a chunk at a time (``lane.bound`` is
        where the last chunk ended), so a mirror of millions of patches
        costs no more memory than a small one.
        """
        if not lane.todo:
            lane.todo = await self._parents(lane)
        batch = Batch()
        if lane.todo:
            child, parent_id = lane.todo[-1]
            listed = await self.fetcher.sublist(child, parent_id, batch)
            res = RESOURCES[child]
            if listed is not None and res.rereads_parent and res.parent is not None:
                # (The parent sums them up, as a patch its combined check:
                # a list that changed reads it again too.)
                rows = await self.db.execute_fetchall(
                    f"SELECT id FROM {res.table} WHERE {res.parent.column} = ?", (parent_id,)
                )
                if {r[0] for r in rows} != set(listed):
                    await self.fetcher.detail(res.parent.resource, parent_id, batch)
            lane.todo.pop()
            lane.bound = (child, parent_id)
        if lane.todo or await self._more_parents(lane):
            lane.page += 1
        else:
            self._end_round(lane)
        return batch

    async def _orders_step(self, lane: Lane) -> Batch:
        """The order of a few public bundles, from their mboxes (in id order,
        ``lane.bound`` where the last step ended); an order unchanged writes
        nothing."""
        rows = list(
            await self.db.execute_fetchall(
                "SELECT id, json_extract(doc, '$.mbox') FROM bundles "
                "WHERE public = 1 AND id > ? ORDER BY id LIMIT ?",
                (lane.bound or 0, ORDERS_CHUNK),
            )
        )
        batch = Batch()
        bundles = [(bundle_id, mbox) for bundle_id, mbox in rows if isinstance(mbox, str)]
        await self.follower.refresher.read_bundle_orders(bundles, batch)
        if len(rows) == ORDERS_CHUNK:
            lane.bound = rows[-1][0]
            lane.page += 1
        else:
            self._end_round(lane)
        return batch

    async def _parents(self, lane: Lane) -> list[tuple[str, int]]:
        """The next chunk of parents with children after ``lane.bound``."""
        child, after = lane.bound or (lane.children[0], None)
        for name in lane.children[lane.children.index(child) :]:
            res = RESOURCES[name]
            assert res.parent is not None
            column = res.parent.column
            where = f" WHERE {column} < ?" if after is not None and name == child else ""
            rows = await self.db.execute_fetchall(
                f"SELECT DISTINCT {column} FROM {res.table}{where} "
                f"ORDER BY {column} DESC LIMIT {PARENT_CHUNK}",
                (after,) if where else (),
            )
            if rows:
                return [(name, r[0]) for r in reversed(list(rows))]  # pop() takes the newest
        return []

    async def _more_parents(self, lane: Lane) -> bool:
        lane.todo = await self._parents(lane)
        return bool(lane.todo)

    async def _events_step(self, lane: Lane) -> Batch:
        """Events older than the follower's window, oldest first, by date."""
        cursor = await store.get_meta(self.db, CURSOR)
        if cursor is None:
            self._end_round(lane)
            return Batch()
        limit = shifted(cursor, self.follower.overlap)
        since: str | None = lane.bound
        params: list[tuple[str, Any]] = [("order", "date"), ("before", limit)]
        if since is not None:
            params.append(("since", since))
        params += [("page", 1), ("per_page", PER_PAGE)]
        got = await self.fetcher.get(f"{list_url('events')}?{urlencode(params)}", list)
        events = [e for e in (got[0] if got else []) if isinstance(e, dict)]
        batch, _ = await self.follower.apply(events)
        dates = [e["date"] for e in events if isinstance(e.get("date"), str)]
        full = len(events) >= PER_PAGE
        upper = max(dates) if full and dates else limit
        if since is None or upper > since:
            # Every event upstream has from ``since`` up to ``upper`` is listed.
            listed = [e["id"] for e in events if type(e.get("id")) is int]
            conditions, args = ["date < ?"], [upper]
            if since is not None:
                conditions.append("date >= ?")
                args.append(since)
            rows = await self.db.execute_fetchall(
                f"SELECT id FROM events WHERE {' AND '.join(conditions)}", args
            )
            kept = set(listed)
            batch.deletions.extend(("events", r[0]) for r in rows if r[0] not in kept)
        if full and dates and (since is None or max(dates) > since):
            lane.bound = max(dates)
            lane.page += 1
        else:
            # Done, or a whole page of one date: leave those to the next round.
            self._end_round(lane)
        return batch
