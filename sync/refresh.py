"""Refreshing exactly what changed: from named objects to one batch.

An event, a webhook or a sweep names objects that changed upstream; some
changes reach further than the object named.  :class:`Wanted` says what to
fetch, and :meth:`Refresher.collect` fetches it, then what it implies:

* the series of a new patch or cover (their ``patches``, ``cover_letter``
  and counts change with it);
* every patch related to a patch whose relations changed, before or after
  (a relation is shared: each member lists the others);
* the full representation of any object the batch only knows in its
  embedded or list shape and the mirror does not hold yet (a new
  submitter, a new project, a new patch seen in a list), so that nothing
  is ever served with fields missing;
* the patch order of a bundle that is new or whose patches changed, from
  its mbox (the API does not show it; offline bundle downloads need it).

Everything goes into one batch, written in one transaction by the caller.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
import orjson

from mirror import store
from mirror.resources import RESOURCES
from mirror.store import Batch
from sync.fetch import Fetcher, pool

#: Resources whose embedded shape lacks fields of their full shape: an
#: object first seen embedded is fetched whole (users are embedded whole).
PARTIAL_WHEN_EMBEDDED = ("projects", "people", "patches", "covers", "series")


async def stale_bundle_orders(
    db: aiosqlite.Connection, bundles: dict[int, dict[str, Any]]
) -> dict[int, str]:
    """Of these bundles (documents, as stored or as read), those whose stored
    order does not list exactly their patches: bundle id -> its mbox path."""
    known = await store.bundle_orders(db, sorted(bundles))
    stale = {}
    for bundle_id, doc in bundles.items():
        patches, mbox = doc.get("patches"), doc.get("mbox")
        if not isinstance(patches, list) or not isinstance(mbox, str):
            continue  # a fragment without them: nothing to compare
        if set(known.get(bundle_id, ())) != set(patches):
            stale[bundle_id] = mbox
    return stale


@dataclass
class Wanted:
    """What to fetch: details, sub-lists, and the relations they imply."""

    #: (resource, id) whose detail to fetch.
    details: set[tuple[str, int]] = field(default_factory=set)
    #: (child resource, parent id): a parent's comments or checks.
    sublists: set[tuple[str, int]] = field(default_factory=set)
    #: (patches or covers, id): fetch it, then the series it belongs to.
    series_of: set[tuple[str, int]] = field(default_factory=set)
    #: Patch ids: fetch them and every patch related to them.
    related_of: set[int] = field(default_factory=set)

    def update(self, other: Wanted) -> None:
        self.details |= other.details
        self.sublists |= other.sublists
        self.series_of |= other.series_of
        self.related_of |= other.related_of

    def __bool__(self) -> bool:
        return bool(self.details or self.sublists or self.series_of or self.related_of)


class Refresher:
    def __init__(self, db: aiosqlite.Connection, fetcher: Fetcher) -> None:
        self.db = db
        self.fetcher = fetcher

    async def _known(self, resource: str, ids: set[int]) -> set[int]:
        """Which of ``ids`` the mirror holds (whole, not only embedded)."""
        if not ids:
            return set()
        table = RESOURCES[resource].table
        found: set[int] = set()
        ordered = sorted(ids)
        for start in range(0, len(ordered), 500):
            chunk = ordered[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self.db.execute_fetchall(
                f"SELECT id FROM {table} WHERE id IN ({marks})", chunk
            )
            found.update(r[0] for r in rows)
        return found

    async def _related(self, patch_ids: set[int]) -> set[int]:
        """The patches the mirror shows related to ``patch_ids``."""
        found: set[int] = set()
        for obj_id in patch_ids:
            rows = await self.db.execute_fetchall("SELECT doc FROM patches WHERE id = ?", (obj_id,))
            for (doc,) in rows:
                found.update(i for i in orjson.loads(doc).get("related") or () if type(i) is int)
        return found

    async def _fetch(
        self, details: set[tuple[str, int]], sublists: set[tuple[str, int]], batch: Batch
    ) -> dict[tuple[str, int], dict[str, Any]]:
        got: dict[tuple[str, int], dict[str, Any]] = {}

        async def one(item: tuple[str, tuple[str, int]]) -> None:
            kind, (resource, obj_id) = item
            if kind == "detail":
                obj = await self.fetcher.detail(resource, obj_id, batch)
                if obj is not None:
                    got[(resource, obj_id)] = obj
            else:
                await self.fetcher.sublist(resource, obj_id, batch)

        work = [("detail", d) for d in sorted(details)] + [("sub", s) for s in sorted(sublists)]
        await pool(work, one, self.fetcher.concurrency)
        return got

    async def collect(self, wanted: Wanted, batch: Batch | None = None) -> Batch:
        """Fetch ``wanted`` and what it implies into ``batch`` (or a new one)."""
        batch = batch if batch is not None else Batch()
        related_before = await self._related(wanted.related_of)
        first = wanted.details | wanted.series_of | {("patches", p) for p in wanted.related_of}
        got = await self._fetch(first, wanted.sublists, batch)

        second: set[tuple[str, int]] = set()
        for resource, obj_id in wanted.series_of:
            for series in (got.get((resource, obj_id)) or {}).get("series") or ():
                if isinstance(series, dict) and type(series.get("id")) is int:
                    second.add(("series", series["id"]))
        related = set(related_before)
        for patch_id in wanted.related_of:
            for other in (got.get(("patches", patch_id)) or {}).get("related") or ():
                if isinstance(other, dict) and type(other.get("id")) is int:
                    related.add(other["id"])
        second |= {("patches", p) for p in related}
        second -= set(got) | first
        got.update(await self._fetch(second, set(), batch))

        await self.complete_new_objects(batch, set(got) | first | second)
        await self.learn_bundle_orders(batch)
        return batch

    async def complete_new_objects(
        self,
        batch: Batch,
        fetched: Collection[tuple[str, int]] = (),
    ) -> None:
        """Fetch whole what the batch does not hold whole and the mirror lacks.

        An object first seen embedded, or in a list (without its detail
        fields), would otherwise be served with fields missing.
        """
        deleted = set(batch.deletions)
        missing: set[tuple[str, int]] = set()
        for resource in PARTIAL_WHEN_EMBEDDED:
            if resource in self.fetcher.refused:
                continue
            ids = {
                obj_id
                for obj_id in batch.docs.get(resource, {})
                if (resource, obj_id) not in fetched and (resource, obj_id) not in deleted
            }
            missing |= {(resource, i) for i in ids - await self._known(resource, ids)}
        if missing:
            await self._fetch(missing, set(), batch)

    async def learn_bundle_orders(self, batch: Batch, limit: int | None = None) -> None:
        """Read into ``batch`` the order of each bundle it holds whose stored
        order does not list exactly its patches (a new bundle, a changed
        one): at most ``limit`` of them, the others when next seen."""
        gone = {obj_id for resource, obj_id in batch.deletions if resource == "bundles"}
        bundles = {i: d for i, d in batch.docs.get("bundles", {}).items() if i not in gone}
        stale = sorted((await stale_bundle_orders(self.db, bundles)).items())
        await self.read_bundle_orders(stale[:limit], batch)

    async def read_bundle_orders(self, bundles: list[tuple[int, str]], batch: Batch) -> None:
        """Each (bundle id, mbox path)'s order, from its mbox, into ``batch``:
        one mbox at a time, since each is read whole (up to the client's
        ``max_bytes``) for the few bytes of its ids."""

        async def one(item: tuple[int, str]) -> None:
            bundle_id, path = item
            order = await self.fetcher.bundle_order(path)
            if order is not None:
                batch.bundle_orders[bundle_id] = order

        await pool(bundles, one, 1)
