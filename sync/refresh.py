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
from mirror.model import Payload, RefFilter
from mirror.resources import RESOURCES
from mirror.store import Batch
from sync.fetch import Fetcher, pool

#: Resources whose embedded shape lacks fields of their full shape: an
#: object first seen embedded is fetched whole (users are embedded whole;
#: comments and checks are read whole with their parent's list).
PARTIAL_WHEN_EMBEDDED = tuple(
    name for name, res in RESOURCES.items() if res.partial_when_embedded and res.parent is None
)


async def stale_bundle_orders(
    db: aiosqlite.Connection, bundles: dict[int, dict[str, Any]]
) -> dict[int, str]:
    """Of these public bundles (documents, as stored or as read), those whose
    stored order does not list exactly their patches: bundle id -> its mbox
    path."""
    known = await store.bundle_orders(db, sorted(bundles))
    stale = {}
    for bundle_id, doc in bundles.items():
        patches, mbox = doc.get("patches"), doc.get("mbox")
        if not isinstance(patches, list) or not isinstance(mbox, str):
            continue  # a fragment without them: nothing to compare
        if doc.get("public") is not True:
            continue  # (only public bundles' mboxes are built from the mirror)
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


@dataclass(frozen=True)
class Change:
    """One object that changed upstream, as an event or a write names it."""

    resource: str
    #: Its id (None: a comment or check known only by its parent).
    id: int | None
    #: Its parent's id (comments, checks).
    parent: int | None = None
    #: "created", "changed", "related" (its relations changed) or "written"
    #: (a write through the gateway: anything of it may have changed).
    how: str = "changed"


def implied(change: Change) -> Wanted:
    """What to read again when ``change`` happened: the one rule the event
    follower and the server's read-back share, from the descriptions.

    A comment or check is read again with its parent's whole list (which
    also finds those deleted), and its parent too where the description
    says so (a patch's combined ``check``); a new patch or cover with its
    series; a patch whose relations changed (or that a write touched)
    with its related patches; anything else, its own detail.
    """
    res = RESOURCES[change.resource]
    want = Wanted()
    if res.parent is not None:
        if change.parent is not None:
            want.sublists.add((res.name, change.parent))
            if res.rereads_parent:
                want.details.add((res.parent.resource, change.parent))
    elif change.id is None:
        pass
    elif change.how == "created" and "series" in res.field_names:
        want.series_of.add((res.name, change.id))
    elif change.how == "related" or (change.how == "written" and "related" in res.field_names):
        want.related_of.add(change.id)
    else:
        want.details.add((res.name, change.id))
    return want


def _payload_keys() -> frozenset[str]:
    """The keys of objects events' payloads carry (``patch``, ``series``...)."""
    keys = set()
    for fld in RESOURCES["events"].fields:
        if isinstance(fld, Payload):
            keys |= {shown.name for fields in fld.categories.values() for shown in fields}
    return frozenset(keys)


_PAYLOAD_KEYS = _payload_keys()


def event_filter(resource: str) -> str | None:
    """The events' filter, and payload key, naming what an event is about
    when it is about an object of ``resource``: ``patch`` for patches; a
    comment's or check's events name its parent (None: events are never
    about such objects: bundles, projects, users)."""
    res = RESOURCES[resource]
    target = res.parent.resource if res.parent is not None else resource
    for flt in RESOURCES["events"].filters:
        if isinstance(flt, RefFilter) and flt.target == target and flt.param in _PAYLOAD_KEYS:
            return flt.param
    return None


def events_of(change: Change) -> dict[str, int]:
    """The filters of the events ``change`` may have caused (``{"patch": 7}``)."""
    param = event_filter(change.resource)
    obj_id = change.parent if RESOURCES[change.resource].parent is not None else change.id
    return {param: obj_id} if param is not None and obj_id is not None else {}


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
