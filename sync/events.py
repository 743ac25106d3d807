"""Following upstream's events: what changed, from a stored cursor.

Patchwork's ``since`` filter is ``>=`` on the event date, several events
can share a date, and an event can become visible after newer ones (its
transaction committed late).  So each poll reads, oldest first
(``order=date``), every event from a few seconds before the cursor (the
newest date applied); at least once a minute it reads from the cursor
minus a longer overlap instead, for commits later still.  It moves on by date
(keyset), not by page number, so events appearing or vanishing meanwhile
cannot shift one past it.  Events the mirror already holds were
applied before and are skipped; the rest are applied: the objects they
name are refreshed (:func:`wanted`), and the events, those objects and the
new cursor are written in one transaction.  Killed at any point, a poll
leaves either all of that or none of it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import aiosqlite

from mirror import store
from mirror.resources import RESOURCES
from mirror.store import Batch
from sync.fetch import PER_PAGE, Fetcher, list_url
from sync.refresh import Change, Refresher, Wanted, event_filter, implied

log = logging.getLogger(__name__)

CURSOR = "events.cursor"

#: What each of Patchwork's event categories says changed, and how; the
#: categories announcing comments and checks come from their descriptions.
_CHANGES: dict[str, tuple[str, str]] = {
    "patch-created": ("patches", "created"),
    "patch-completed": ("patches", "created"),
    "cover-created": ("covers", "created"),
    "patch-relation-changed": ("patches", "related"),
    "patch-state-changed": ("patches", "changed"),
    "patch-delegated": ("patches", "changed"),
    "check-updated": ("checks", "changed"),
    **{
        res.announced.created: (name, "created")
        for name, res in RESOURCES.items()
        if res.announced is not None
    },
}


def _id(payload: dict[str, Any], key: str | None) -> int | None:
    obj = payload.get(key) if key else None
    if isinstance(obj, dict) and type(obj.get("id")) is int:
        return obj["id"]
    return None


def change_of(event: dict[str, Any]) -> Change | None:
    """The change an upstream event announces (None: one of a category this
    program does not know, or without what it should name)."""
    known = _CHANGES.get(event.get("category"))  # type: ignore[arg-type]
    payload = event.get("payload")
    if known is None or not isinstance(payload, dict):
        return None
    resource, how = known
    named = _id(payload, event_filter(resource))
    if RESOURCES[resource].parent is not None:
        return Change(resource, None, named, how) if named is not None else None
    return Change(resource, named, None, how) if named is not None else None


def wanted(event: dict[str, Any]) -> Wanted:
    """What to refresh for one upstream event (as upstream lists it)."""
    want = Wanted()
    payload = event.get("payload")
    if not isinstance(payload, dict):
        return want
    change = change_of(event)
    if change is not None:
        want = implied(change)
    elif event.get("category") not in _CHANGES:
        # A category of a newer Patchwork: refresh whatever it names.
        for resource in ("patches", "covers"):
            named = _id(payload, event_filter(resource))
            if named is not None:
                want.details.add((resource, named))
    series = _id(payload, event_filter("series"))
    if series is not None:
        want.details.add(("series", series))
    return want


#: Seconds before the cursor every poll reads again: an event committed a
#: little late (a mail parsed in one transaction) is applied at once.
NEAR_OVERLAP = 5.0
#: Pauses before reading a patch again that does not show its event yet.
RECHECK_PAUSES = (0.2, 0.5, 1.0)


def promises(events: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """What the newest state and delegate events say each patch now shows."""
    promised: dict[int, dict[str, Any]] = {}
    for event in sorted(events, key=lambda e: (str(e.get("date")), e["id"])):
        payload = event.get("payload")
        patch = _id(payload, "patch") if isinstance(payload, dict) else None
        if patch is None or not isinstance(payload, dict):
            continue
        if event.get("category") == "patch-state-changed":
            if isinstance(payload.get("current_state"), str):
                promised.setdefault(patch, {})["state"] = payload["current_state"]
        elif event.get("category") == "patch-delegated":
            promised.setdefault(patch, {})["delegate"] = _id(payload, "current_delegate")
    return promised


def shifted(date: str, seconds: float) -> str:
    """An upstream date (naive ISO) moved back by ``seconds``, in its format."""
    try:
        moved = dt.datetime.fromisoformat(date) - dt.timedelta(seconds=seconds)
    except ValueError:
        return date
    return moved.isoformat(timespec="microseconds")


class Follower:
    """Applies upstream's new events to the mirror."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        fetcher: Fetcher,
        *,
        overlap: float = 60.0,
        wide_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.fetcher = fetcher
        self.refresher = Refresher(db, fetcher)
        self.overlap = overlap
        #: Seconds between polls that read the overlap again.
        self.wide_every = wide_every
        self.clock = clock
        self._wide_at = -math.inf
        # The newest cursor, when it was first seen, and which re-reads of
        # the stretch before it are no longer needed.
        self._cursor: str | None = None
        self._cursor_at = 0.0
        self._near_done = self._wide_done = False

    def _since(self, cursor: str) -> str:
        """Where this poll starts reading: the cursor less what may come late.

        An event commits at most ``overlap`` seconds after its date.  So
        once a cursor has been the newest for that long (by our clock:
        upstream's dates are in its own time zone) and a wide poll has read
        since, nothing can still appear before it, and polls stop reading
        the same stretch again; likewise for the near window.  An idle
        poll then asks for a page holding only the newest event.
        """
        now = self.clock()
        if cursor != self._cursor:
            self._cursor, self._cursor_at = cursor, now
            self._near_done = self._wide_done = False
        age = now - self._cursor_at
        if not self._wide_done and now - self._wide_at >= self.wide_every:
            self._wide_at, self._wide_done = now, age >= self.overlap
            return shifted(cursor, self.overlap)
        if not self._near_done:
            self._near_done = age >= min(NEAR_OVERLAP, self.overlap)
            return shifted(cursor, min(NEAR_OVERLAP, self.overlap))
        return cursor

    async def known(self, ids: list[int]) -> set[int]:
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = await self.db.execute_fetchall(f"SELECT id FROM events WHERE id IN ({marks})", ids)
        return {r[0] for r in rows}

    async def apply(self, events: list[Any], batch: Batch | None = None) -> tuple[Batch, int]:
        """Refresh what ``events`` name (those not applied before) into a batch.

        Returns the batch (events included) and how many events were new.
        """
        batch = batch if batch is not None else Batch()
        valid = [e for e in events if isinstance(e, dict) and type(e.get("id")) is int]
        known = await self.known([e["id"] for e in valid])
        new = [e for e in valid if e["id"] not in known]
        want = Wanted()
        for event in new:
            want.update(wanted(event))
        # Events first: the objects fetched after them are at least as new.
        self.fetcher.normalize("events", new, batch)
        await self.refresher.collect(want, batch)
        await self._until_kept(promises(new), batch)
        return batch, len(new)

    async def _until_kept(self, promised: dict[int, dict[str, Any]], batch: Batch) -> None:
        """Read again a patch that does not show what its newest event says.

        Patchwork records state and delegate events *before* saving the
        patch (a ``pre_save`` signal, each write committing on its own), so
        a poll can see the event an instant before the change itself.
        """
        for pause in RECHECK_PAUSES:
            patches = batch.docs.get("patches", {})
            gone = {obj_id for resource, obj_id in batch.deletions if resource == "patches"}
            late = [
                patch_id
                for patch_id, fields in promised.items()
                if patch_id not in gone
                and any(patches.get(patch_id, {}).get(k, v) != v for k, v in fields.items())
            ]
            if not late:
                return
            await asyncio.sleep(pause)
            for patch_id in late:
                await self.fetcher.detail("patches", patch_id, batch)
        # Changed again since, most likely: a newer event will tell.

    async def poll(self) -> int:
        """Read and apply every event since the cursor; how many were new."""
        cursor = await store.get_meta(self.db, CURSOR)
        since = self._since(cursor) if cursor else None
        url = list_url("events")
        applied = 0
        page = 1
        while True:
            params: list[tuple[str, Any]] = [("order", "date")]
            if since is not None:
                params.append(("since", since))
            params += [("page", page), ("per_page", PER_PAGE)]
            got = await self.fetcher.get(f"{url}?{urlencode(params)}", list)
            events = got[0] if got else []
            batch, new = await self.apply(events)
            dates = [
                e["date"] for e in events if isinstance(e, dict) and isinstance(e.get("date"), str)
            ]
            newest = max(dates, default=None)
            if new and newest and (cursor is None or newest > cursor):
                batch.meta[CURSOR] = cursor = newest
            await store.write(self.db, batch)
            applied += new
            if len(events) < PER_PAGE or not dates:
                return applied
            if since is not None and min(dates) == max(dates) == since:
                page += 1  # a whole page of one date: page through that date
            else:
                since, page = max(dates), 1
