"""The drift check: does the mirror, as the gateway serves it, equal upstream?

``patchwork-gateway check --config FILE [--sample N] [--resource R]... [--json]``
reads upstream's API (version 1.4, with the sync's token, through the same
polite client as the sync: its concurrency, time-outs and retries) and
compares every object it reads with the gateway's rendering of the
mirrored object: the gateway's own code (``gateway.api.render``), at the
latest version, with upstream's origin (learnt from its API index) in
place of the gateway's, so a field compares equal exactly when a client
of the gateway sees what a client of upstream sees, the origin aside.

Resources, as the mirror stores them: ``events`` (first), ``projects``,
``users``, ``people``, ``series``, ``covers``, ``patches``, ``bundles``,
then the per-parent lists ``patch_comments`` and ``checks`` (of patches)
and ``cover_comments`` (of covers).

The full check (the default) reads every page of every list
(``per_page=250``) and compares page by page: what it holds at a time is
one page and its mirrored counterparts, whatever the instance's size.
List pages show objects without their detail-only fields (a patch's
``headers``, ``content``, ``diff`` and ``prefixes``, a cover's ``headers``
and ``content``: the message, which does not change once received); those
are compared for any object whose detail the mirror lacks, and for the
objects of a sample.  Comments and checks are read per parent: every
parent the mirror holds any for, every parent upstream's events announce
some for, every parent the sync's own rule (``sync.crawler.needed_parents``)
says may have some, and 100 others at random, which tests that rule.  A
full check costs about the requests of an initial sync.

``--sample N`` checks N objects per resource: page 1 and N/250 (at least
one) other pages of each list, chosen at random, give upstream's ids in
the id ranges they cover, compared with the mirror's ids in the same
ranges (objects on one side only); then N ids, half drawn from the
mirror's and half from those upstream pages, are fetched in detail and
compared whole (an id upstream answers 404 for is gone upstream).  Events
have no detail URL: the newest pages down to the mirror's cursor (20 at
most) and N/250 others at random are compared item by item.
Comments and checks: the whole lists of N parents, half of them parents
the mirror holds some for.

Reported, by resource: objects **missing** from the mirror (upstream has
them), **extra** objects (the mirror has them, upstream no longer does, or
no longer shows them to the sync identity), and for objects on both sides
each **differing** field, by dotted path for nested values (``project.name``,
``series.0.name``), e.g. ``patches 12 state: mirror "new" upstream
"accepted"``.  Nothing is ignored silently; the rules:

1. Events newer than the mirror's cursor (the date of the newest event the
   sync has applied, which ``status`` shows) that the mirror lacks are
   listed as *newer than the mirror* and not counted: the sync reads the
   event log up to its cursor by design.  What such events announce is
   compared on the objects themselves, and counted.
2. A difference in an object that such an event names is counted, and
   marked *pending*: the sync worker applies it at its next poll.  On a
   mirror kept by ``run``, a change made upstream within the last poll
   interval (or, for changes Patchwork emits no event for, the last sweep
   interval) shows as a difference; right after ``sync --once`` there must
   be none.  Run the check again to tell lag from drift.
3. A user's ``settings``: Patchwork shows them to that user alone, and the
   gateway forwards that read upstream; never compared.
4. A resource upstream does not show the sync identity (people and users,
   without a token) is skipped, and listed as skipped: the gateway
   forwards its reads.
5. Upstream changing during the check can show a difference that is gone a
   moment later (an object deleted shifts a list under its pages): run the
   check again to confirm.

Exit status: 0 when there are no differences, 1 when there are, 2 on an
error (configuration, no mirror, upstream unreachable or refusing the
token), said in one line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import random
import re
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
import orjson

from cli.config import Config
from gateway.api.render import Context, Embeds, embedded_refs, renderer
from gateway.http.responses import json_body
from mirror import schema
from mirror.model import Doc, Embed, Payload
from mirror.reader import Reader
from mirror.resources import RESOURCES
from mirror.store import REFUSED
from mirror.versions import LATEST
from sync import reading
from sync.reading import (
    CURSOR,
    MAY_BE_REFUSED,
    PER_PAGE,
    SUBLISTS,
    Page,
    Progress,
    Refused,
    SubList,
    SyncError,
    UpstreamError,
    UpstreamReader,
    needed_parents,
    pool,
)

log = logging.getLogger(__name__)

#: Top-level lists, referenced objects first.
TOP = ("projects", "users", "people", "series", "covers", "patches", "bundles")
#: Every resource checked, in order: events first (they tell which objects
#: have changes pending, and which parents have comments or checks).
ORDER = ("events", *TOP, *(sub.child for sub in SUBLISTS))
#: Differences (and ids) kept per resource and field; the rest are counted.
KEEP = 1000
#: Of which the text report shows this many.
SHOWN = 10
#: Parents whose comments and checks a full check reads beyond those that
#: may have some: a test of the rule that says the others have none.
OTHER_PARENTS = 100
#: Objects remembered as named by events newer than the cursor.
PENDING_MAX = 100_000
#: Pages of events a sample reads from the newest, looking for the cursor.
NEWER_PAGES = 20
#: A value longer than this (as JSON) is kept in brief.
BRIEF = 500


class CheckError(Exception):
    """The check cannot run (no mirror, another upstream's mirror...)."""


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


#: A key one side has and the other has not.
ABSENT: Any = _Absent()


@dataclass
class Capped:
    """A count, and the first :data:`KEEP` of the things counted."""

    count: int = 0
    items: list[Any] = field(default_factory=list)

    def add(self, item: Any) -> None:
        self.count += 1
        if len(self.items) < KEEP:
            self.items.append(item)


@dataclass
class Difference:
    obj_id: int
    path: str
    mirror: Any
    upstream: Any


@dataclass
class Tally:
    """What the check found for one resource."""

    checked: int = 0
    missing: Capped = field(default_factory=Capped)
    extra: Capped = field(default_factory=Capped)
    #: Events upstream has, newer than the mirror's cursor (not counted).
    newer: Capped = field(default_factory=Capped)
    #: Objects with at least one differing field.
    differing: int = 0
    #: Differences by field (dotted path, list indexes as ``*``).
    fields: dict[str, Capped] = field(default_factory=dict)
    skipped: str | None = None
    #: Comments and checks: the parents whose lists were read.
    parents: int = 0

    @property
    def differences(self) -> int:
        return self.missing.count + self.extra.count + self.differing


@dataclass
class Report:
    upstream: str
    mirror: str
    sample: int | None
    cursor: str | None
    initial_sync_complete: bool
    resources: dict[str, Tally] = field(default_factory=dict)
    #: (resource, id) named by events newer than the mirror's cursor.
    pending: set[tuple[str, int]] = field(default_factory=set)
    requests: int = 0
    seconds: float = 0.0

    @property
    def differences(self) -> int:
        return sum(t.differences for t in self.resources.values())

    @property
    def drift(self) -> bool:
        return self.differences > 0

    def is_pending(self, resource: str, obj_id: int) -> bool:
        return (resource, obj_id) in self.pending

    def document(self) -> dict[str, Any]:
        """The report as one JSON-able document (``--json``)."""
        resources: dict[str, Any] = {}
        for name, tally in self.resources.items():

            def ids(capped: Capped, name: str = name) -> dict[str, Any]:
                items = [
                    {"id": i, "pending": True} if self.is_pending(name, i) else {"id": i}
                    for i in capped.items
                ]
                return {"count": capped.count, "objects": items, "more": capped.count - len(items)}

            fields = {}
            for path, capped in sorted(tally.fields.items()):
                diffs = []
                for d in capped.items:
                    entry: dict[str, Any] = {"id": d.obj_id, "path": d.path}
                    if d.mirror is not ABSENT:
                        entry["mirror"] = d.mirror
                    if d.upstream is not ABSENT:
                        entry["upstream"] = d.upstream
                    if self.is_pending(name, d.obj_id):
                        entry["pending"] = True
                    diffs.append(entry)
                fields[path] = {
                    "count": capped.count,
                    "differences": diffs,
                    "more": capped.count - len(diffs),
                }
            entry = {
                "skipped": tally.skipped,
                "checked": tally.checked,
                "missing": ids(tally.missing),
                "extra": ids(tally.extra),
                "differing": tally.differing,
                "fields": fields,
                "newer": ids(tally.newer),
            }
            if name in CHILDREN:
                entry["parents"] = tally.parents
            resources[name] = entry
        return {
            "upstream": self.upstream,
            "mirror": self.mirror,
            "mode": "full" if self.sample is None else "sample",
            "sample": self.sample,
            "cursor": self.cursor,
            "initial_sync_complete": self.initial_sync_complete,
            "drift": self.drift,
            "differences": self.differences,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "resources": resources,
        }


CHILDREN = {sub.child: sub for sub in SUBLISTS}


# -- comparing ----------------------------------------------------------------


def diff(mine: Any, theirs: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted path, mirror's value, upstream's value) of each difference.

    Objects compare key by key (a key on one side only is :data:`ABSENT`
    on the other), lists of equal length item by item, anything else as a
    whole and by type (``0`` is not ``false``).
    """
    if isinstance(mine, dict) and isinstance(theirs, dict):
        for key, value in theirs.items():
            sub = f"{path}.{key}" if path else str(key)
            if key in mine:
                yield from diff(mine[key], value, sub)
            else:
                yield sub, ABSENT, value
        for key, value in mine.items():
            if key not in theirs:
                yield (f"{path}.{key}" if path else str(key)), value, ABSENT
    elif isinstance(mine, list) and isinstance(theirs, list) and len(mine) == len(theirs):
        for index, (a, b) in enumerate(zip(mine, theirs, strict=True)):
            yield from diff(a, b, f"{path}.{index}")
    elif type(mine) is not type(theirs) or mine != theirs:
        yield path, mine, theirs


_INDEX = re.compile(r"\.[0-9]+(?=\.|$)")


def field_of(path: str) -> str:
    """The field a difference is grouped under: list indexes as ``*``."""
    return _INDEX.sub(".*", path)


def _ids_of(value: Any) -> list[Any] | None:
    """The ids of a list of objects that all have one, else None."""
    if isinstance(value, list) and value and all(isinstance(v, dict) and "id" in v for v in value):
        return [v["id"] for v in value]
    return None


def brief(mine: Any, theirs: Any) -> tuple[Any, Any]:
    """Two differing values to keep in a report: shortened alike if either is large."""
    sizes = [len(orjson.dumps(v)) for v in (mine, theirs) if v is not ABSENT]
    if max(sizes, default=0) <= BRIEF:
        return mine, theirs
    return _short(mine), _short(theirs)


def _short(value: Any) -> Any:
    if value is ABSENT:
        return value
    ids = _ids_of(value)
    if ids is not None:
        return {"brief": f"a list of {len(ids)} objects", "ids": ids[:100]}
    if isinstance(value, str):
        return value if len(value) <= 200 else f"{value[:200]}… ({len(value):,} characters)"
    text = orjson.dumps(value)
    if len(text) <= BRIEF:
        return value
    return text[:200].decode("utf-8", "replace") + f"… ({len(text):,} bytes of JSON)"


def show(value: Any, width: int = 80) -> str:
    """A value as the text report shows it: JSON, lists of objects by id."""
    if value is ABSENT:
        return "(absent)"
    ids = _ids_of(value)
    if isinstance(value, dict) and set(value) == {"brief", "ids"}:
        ids = value["ids"]  # a list kept in brief
    if ids is not None:
        head = ", ".join(str(i) for i in ids[:20])
        return f"[ids {head}{', …' if len(ids) > 20 else ''}]"
    text = orjson.dumps(value).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


def _valid_id(item: Any) -> int | None:
    if isinstance(item, dict) and type(item.get("id")) is int:
        return int(item["id"])
    return None


# -- the check ----------------------------------------------------------------


class Checker:
    """Compares one upstream with the mirror a :class:`Reader` reads."""

    def __init__(
        self,
        reader: Reader,
        db: aiosqlite.Connection,
        upstream: UpstreamReader,
        base_url: str,
        *,
        concurrency: int = 4,
        sample: int | None = None,
        resources: Iterable[str] | None = None,
        progress: Progress | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.reader = reader
        self.db = db
        self.upstream = upstream
        self.base_url = base_url.rstrip("/")
        self.concurrency = concurrency
        self.sample = sample
        wanted = set(resources or ORDER)
        self.selected = [name for name in ORDER if name in wanted]
        self.progress = progress or Progress(bar=False)
        self.rng = rng or random.Random()
        self.cursor = reader.meta(CURSOR)
        self.report = Report(
            upstream=self.base_url,
            mirror=str(reader.path),
            sample=sample,
            cursor=self.cursor,
            initial_sync_complete=reader.meta("sync.state") == "complete",
        )
        self.ctx = Context(self.base_url, LATEST, LATEST)
        #: Parents upstream's events announce comments or checks for.
        self.announced: dict[str, set[int]] = {sub.child: set() for sub in SUBLISTS}
        #: Upstream ids a sample saw, by resource (parents to sample from).
        self.seen_upstream: dict[str, set[int]] = {}

    # -- entry point -------------------------------------------------------

    async def run(self) -> Report:
        started = time.monotonic()
        await self.probe()
        refused = set(orjson.loads(self.reader.meta(REFUSED) or "[]"))
        for name in self.selected:
            tally = self.report.resources[name] = Tally()
            if name in refused:
                tally.skipped = "not visible to the sync identity (the gateway forwards its reads)"
                continue
            try:
                if name == "events":
                    await (self._events_full() if self.sample is None else self._events_sample())
                elif name in CHILDREN:
                    await self._children(CHILDREN[name], tally)
                elif self.sample is None:
                    await self._list_full(name, tally)
                else:
                    await self._list_sample(name, tally, self.sample)
            except Refused:
                if name not in MAY_BE_REFUSED:
                    raise
                tally.skipped = "upstream refuses it to the sync identity"
        self.report.requests = self.upstream.requests
        self.report.seconds = time.monotonic() - started
        return self.report

    async def probe(self) -> None:
        """Upstream's API index: is it there, and what origin does it use?"""
        try:
            index = await self.upstream.index()
        except Refused as exc:
            raise CheckError(f"{exc}: check [upstream] token") from None
        except UpstreamError as exc:
            raise CheckError(f"upstream {self.base_url} unreachable: {exc}") from None
        url = index.get("patches") if index is not None else None
        marker = f"/api/{LATEST}/"
        if not isinstance(url, str) or marker not in url:
            raise CheckError(f"{self.base_url} does not serve the Patchwork API {LATEST}")
        # Upstream's URLs are built from its origin; the mirror's are
        # rendered with it, so that only a real difference differs.
        self.ctx = Context(url[: url.rindex(marker)], LATEST, LATEST)

    # -- mirror side ---------------------------------------------------------

    def _render(self, name: str, docs: list[Doc], detail: bool) -> dict[int, Any]:
        """``docs`` as the gateway renders them in one answer, by id."""
        refs = [ref for doc in docs for ref in embedded_refs(name, doc)]
        embeds = Embeds(self.reader.docs(refs))
        render = renderer(name, LATEST, detail)
        return {doc["id"]: orjson.loads(json_body(render(doc, embeds, self.ctx))) for doc in docs}

    def _mirror_ids(
        self, table: str, column: str, low: Any, high: Any, *, low_inclusive: bool
    ) -> set[Any]:
        """Ids of the mirror's rows whose ``column`` is in a range (None: open)."""
        where, args = [], []
        if low is not None:
            where.append(f"{column} {'>=' if low_inclusive else '>'} ?")
            args.append(low)
        if high is not None:
            where.append(f"{column} <= ?")
            args.append(high)
        sql = f"SELECT id FROM {table}" + (" WHERE " + " AND ".join(where) if where else "")
        return {row[0] for row in self.reader.rows(sql, args)}

    def _random_ids(self, table: str, n: int) -> list[int]:
        rows = self.reader.rows(f"SELECT id FROM {table} ORDER BY random() LIMIT ?", (n,))
        return [row[0] for row in rows]

    # -- comparing -----------------------------------------------------------

    def _compare(self, name: str, obj_id: int, mine: Any, theirs: Any, tally: Tally) -> None:
        if name == "users" and isinstance(theirs, dict):
            theirs = {k: v for k, v in theirs.items() if k != "settings"}  # rule 3
        tally.checked += 1
        differs = False
        for path, m, u in diff(mine, theirs):
            differs = True
            capped = tally.fields.setdefault(field_of(path), Capped())
            capped.add(Difference(obj_id, path, *brief(m, u)))
        if differs:
            tally.differing += 1

    def _compare_items(self, name: str, items: list[Any], tally: Tally) -> list[int]:
        """Compare list items with the mirror's; the ids of those it lacks."""
        res = RESOURCES[name]
        ids = [i for i in map(_valid_id, items) if i is not None]
        found = self.reader.docs((res.table, i) for i in ids)
        docs = [found[(res.table, i)] for i in dict.fromkeys(ids) if (res.table, i) in found]
        mine = self._render(name, docs, detail=False)
        lacking = []
        for item in items:
            obj_id = _valid_id(item)
            if obj_id is None:
                log.warning("%s: upstream listed a malformed object: %.80r", name, item)
            elif obj_id in mine:
                self._compare(name, obj_id, mine[obj_id], item, tally)
            else:
                lacking.append(obj_id)
        return lacking

    async def _detail(self, name: str, obj_id: int, tally: Tally) -> None:
        """Compare one object's detail."""
        theirs = await self.upstream.detail(name, obj_id)
        doc = self.reader.full(RESOURCES[name].table, obj_id)
        if theirs is None:
            if doc is not None:
                tally.extra.add(obj_id)
        elif doc is None:
            tally.missing.add(obj_id)
        else:
            mine = self._render(name, [doc], detail=True)[obj_id]
            self._compare(name, obj_id, mine, theirs, tally)

    # -- top-level lists -------------------------------------------------------

    async def _list_full(self, name: str, tally: Tally) -> None:
        first = await self.upstream.first_page(name)
        bar = self.progress.phase(f"check {name}", first.last)
        covered: int | None = None  # ids up to this one are compared
        ended = False
        async with contextlib.aclosing(self.upstream.pages(name, first)) as pages:
            async for page in pages:
                ended = not page.has_next
                ids = {i for i in map(_valid_id, page.items) if i is not None}
                high = None if ended else max(ids, default=covered)
                await self._compare_range(name, page.items, covered, high, tally)
                covered = high
                bar.advance(1)
                if ended:
                    break
        if not ended:  # the list shrank: the mirror's ids past the last page read
            await self._compare_range(name, [], covered, None, tally)
        bar.close()

    async def _compare_range(
        self, name: str, items: list[Any], low: int | None, high: int | None, tally: Tally
    ) -> None:
        """A page of an id-ordered list: its items, and the mirror's ids in
        ``(low, high]`` it does not hold.  An object whose detail the mirror
        lacks (its message) is compared in detail instead."""
        res = RESOURCES[name]
        listed = {i for i in map(_valid_id, items) if i is not None}
        undetailed: set[int] = set()
        if res.detail_keys and listed:
            marks = ",".join("?" * len(listed))
            rows = self.reader.rows(
                f"SELECT id FROM {res.table} WHERE id IN ({marks}) AND detail IS NULL",
                sorted(listed),
            )
            undetailed = {row[0] for row in rows}
        summary = [item for item in items if _valid_id(item) not in undetailed]
        for obj_id in self._compare_items(name, summary, tally):
            tally.missing.add(obj_id)

        async def detail(obj_id: int) -> None:
            await self._detail(name, obj_id, tally)

        await pool(sorted(undetailed), detail, self.concurrency)
        mirrored = self._mirror_ids(res.table, "id", low, high, low_inclusive=False)
        for obj_id in sorted(mirrored - listed):
            tally.extra.add(obj_id)

    async def _list_sample(self, name: str, tally: Tally, n: int) -> None:
        res = RESOURCES[name]
        first = await self.upstream.first_page(name)
        last = first.last
        numbers = [1, *self.rng.sample(range(2, last + 1), min(last - 1, math.ceil(n / PER_PAGE)))]
        pages: dict[int, Page] = {1: first}

        async def fetch(number: int) -> None:
            got = await self.upstream.page(name, number)
            if got is not None:
                pages[number] = got

        await pool(numbers[1:], fetch, self.concurrency)
        upstream: set[int] = set()
        mirrored_only: set[int] = set()
        for number, page in sorted(pages.items()):
            ids = {i for i in map(_valid_id, page.items) if i is not None}
            if not ids and number != 1:
                continue
            low = None if number == 1 else min(ids)
            high = max(ids) if page.has_next and ids else None
            mirrored = self._mirror_ids(res.table, "id", low, high, low_inclusive=True)
            for obj_id in sorted(ids - mirrored):
                tally.missing.add(obj_id)
            for obj_id in sorted(mirrored - ids):
                tally.extra.add(obj_id)
                mirrored_only.add(obj_id)
            upstream |= ids & mirrored
        self.seen_upstream[name] = upstream
        chosen = self._choose(n, self._random_ids(res.table, n), upstream, mirrored_only)
        bar = self.progress.phase(f"check {name} (sample)", len(chosen))

        async def one(obj_id: int) -> None:
            await self._detail(name, obj_id, tally)
            bar.advance(1)

        await pool(chosen, one, self.concurrency)
        bar.close()

    def _choose(
        self, n: int, mirror: Iterable[int], upstream: Iterable[int], known: set[int]
    ) -> list[int]:
        """N ids, half from each side's (a side short of ids: more of the other)."""
        mine = sorted(set(mirror) - known)
        theirs = sorted(set(upstream) - known)
        chosen = set(self.rng.sample(mine, min(len(mine), math.ceil(n / 2))))
        rest = sorted(set(theirs) - chosen)
        chosen |= set(self.rng.sample(rest, min(len(rest), n - len(chosen))))
        rest = sorted(set(mine) - chosen)
        chosen |= set(self.rng.sample(rest, min(len(rest), n - len(chosen))))
        return sorted(chosen)

    # -- events --------------------------------------------------------------

    def _events_page(self, items: list[Any], tally: Tally) -> None:
        """Compare a page of events; learn what the newer ones announce."""
        by_id = {_valid_id(item): item for item in items}
        for obj_id in self._compare_items("events", items, tally):
            if self._newer(by_id[obj_id]):
                tally.newer.add(obj_id)  # rule 1
            else:
                tally.missing.add(obj_id)
        for item in items:
            if isinstance(item, dict):
                self._learn(item)

    def _newer(self, event: dict[str, Any]) -> bool:
        date = event.get("date")
        return self.cursor is not None and isinstance(date, str) and date > self.cursor

    def _learn(self, event: dict[str, Any]) -> None:
        """Parents with comments or checks, and objects with changes pending."""
        category = event.get("category")
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return
        for sub in SUBLISTS:
            if category == sub.announced:
                parent = RESOURCES[sub.child].parent
                assert parent is not None
                ref = _valid_id(payload.get(parent.url_key))
                if ref is not None:
                    self.announced[sub.child].add(ref)
        if not self._newer(event) or len(self.report.pending) >= PENDING_MAX:
            return
        for target, key in _PAYLOAD_REFS.get(str(category), ()):
            ref = _valid_id(payload.get(key))
            if ref is not None:
                self.report.pending.add((target, ref))

    def _event_extras(
        self, low: str | None, high: str | None, listed: set[int], tally: Tally
    ) -> None:
        """The mirror's events dated in ``(low, high]`` that upstream did not list."""
        mirrored = self._mirror_ids("events", "date", low, high, low_inclusive=False)
        for obj_id in sorted(mirrored - listed):
            tally.extra.add(obj_id)

    async def _events_full(self) -> None:
        tally = self.report.resources["events"]
        first = await self.upstream.first_page("events")
        bar = self.progress.phase("check events", first.last)
        # Newest first: a page covers the dates from its oldest (exclusive:
        # the next page may hold more of that date) to the page before's.
        covered: str | None = None
        previous: set[int] = set()
        ended = False
        async with contextlib.aclosing(self.upstream.pages("events", first)) as pages:
            async for page in pages:
                ended = not page.has_next
                ids = {i for i in map(_valid_id, page.items) if i is not None}
                # Events pushed onto this page by newer ones were compared.
                fresh = [item for item in page.items if _valid_id(item) not in previous]
                self._events_page(fresh, tally)
                dates = [i["date"] for i in page.items if isinstance(i, dict) and _is_date(i)]
                low = None if ended else min(dates, default=covered)
                self._event_extras(low, covered, ids | previous, tally)
                covered, previous = low, ids
                bar.advance(1)
                if ended:
                    break
        if not ended:
            self._event_extras(None, covered, previous, tally)
        bar.close()

    async def _events_sample(self) -> None:
        tally = self.report.resources["events"]
        assert self.sample is not None
        first = await self.upstream.first_page("events")
        last = first.last
        pages: dict[int, Page] = {1: first}
        # The newest pages, down to the cursor: what is pending.
        number, got = 1, first
        while (
            number < NEWER_PAGES
            and got.has_next
            and all(self._newer(i) for i in got.items if isinstance(i, dict))
        ):
            number += 1
            more = await self.upstream.page("events", number)
            if more is None:
                break
            pages[number] = got = more
        others = range(number + 1, last + 1)
        numbers = self.rng.sample(others, min(len(others), math.ceil(self.sample / PER_PAGE)))

        async def fetch(number: int) -> None:
            got = await self.upstream.page("events", number)
            if got is not None:
                pages[number] = got

        await pool(numbers, fetch, self.concurrency)
        seen: set[int] = set()
        for number, page in sorted(pages.items()):
            fresh = [i for i in page.items if _valid_id(i) not in seen]
            self._events_page(fresh, tally)
            ids = {i for i in map(_valid_id, page.items) if i is not None}
            seen |= ids
            dates = [i["date"] for i in page.items if isinstance(i, dict) and _is_date(i)]
            if not dates:
                continue
            # Strictly inside the page's dates (its ends may go on elsewhere);
            # the first page reaches the newest, the last the oldest.
            high = None if number == 1 else max(dates)
            low = None if not page.has_next else min(dates)
            mirrored = self._mirror_ids("events", "date", low, high, low_inclusive=False)
            if high is not None:
                mirrored -= self._mirror_ids("events", "date", high, high, low_inclusive=True)
            for obj_id in sorted(mirrored - ids):
                tally.extra.add(obj_id)

    # -- comments and checks ---------------------------------------------------

    async def _children(self, sub: SubList, tally: Tally) -> None:
        res = RESOURCES[sub.child]
        parents_table = RESOURCES[sub.parent].table
        assert res.parent is not None
        rows = self.reader.rows(f"SELECT DISTINCT {res.parent.column} FROM {res.table}")
        holding = {row[0] for row in rows if row[0] is not None}
        if self.sample is None:
            parents = holding | self.announced[sub.child] | await needed_parents(self.db, sub)
            drawn = self._random_ids(parents_table, OTHER_PARENTS + len(parents))
            others = sorted(set(drawn) - parents)
            parents |= set(self.rng.sample(others, min(len(others), OTHER_PARENTS)))
        else:
            n = self.sample
            parents = set(self.rng.sample(sorted(holding), min(len(holding), math.ceil(n / 2))))
            candidates = set(self._random_ids(parents_table, n))
            candidates |= self.seen_upstream.get(sub.parent, set())
            rest = sorted(candidates - parents)
            parents |= set(self.rng.sample(rest, min(len(rest), n - len(parents))))
        tally.parents = len(parents)
        bar = self.progress.phase(f"check {sub.child} of {sub.parent}", len(parents))

        async def one(parent_id: int) -> None:
            await self._sublist(sub, parent_id, tally)
            bar.advance(1)

        await pool(sorted(parents), one, self.concurrency)
        bar.close()

    async def _sublist(self, sub: SubList, parent_id: int, tally: Tally) -> None:
        """One parent's whole list (it is small) against the mirror's."""
        res = RESOURCES[sub.child]
        assert res.parent is not None
        # (Empty if the parent is gone upstream.)
        items = await self.upstream.whole_list(sub.child, parent_id)
        docs = self.reader.children(res.table, res.parent.column, parent_id)
        mine = self._render(sub.child, docs, detail=False)
        listed: set[int] = set()
        for item in items:
            obj_id = _valid_id(item)
            if obj_id is None:
                log.warning("%s: upstream listed a malformed object: %.80r", sub.child, item)
            elif obj_id in listed:
                continue
            elif obj_id in mine:
                self._compare(sub.child, obj_id, mine[obj_id], item, tally)
            else:
                tally.missing.add(obj_id)
            if obj_id is not None:
                listed.add(obj_id)
        # Read whole (or gone): what the mirror holds beyond it is extra.
        for obj_id in sorted(set(mine) - listed):
            tally.extra.add(obj_id)


def _is_date(item: dict[str, Any]) -> bool:
    return isinstance(item.get("date"), str)


def _payload_refs() -> dict[str, tuple[tuple[str, str], ...]]:
    """Per event category: (resource, payload key) of the objects it names."""
    payload = next(f for f in RESOURCES["events"].fields if isinstance(f, Payload))
    return {
        category: tuple((f.target, f.name) for f in fields if isinstance(f, Embed))
        for category, fields in payload.categories.items()
    }


_PAYLOAD_REFS = _payload_refs()


async def check(
    config: Config,
    *,
    sample: int | None = None,
    resources: Iterable[str] | None = None,
    progress: Progress | None = None,
    rng: random.Random | None = None,
) -> Report:
    """Compare the configured mirror with its upstream."""
    path = config.storage.path
    if not path.exists():
        raise CheckError(f"{path}: no mirror yet (run `sync`)")
    reader = Reader(path, connections=1, cache_bytes=64 << 20)
    await reader.open(3600)
    db = await aiosqlite.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        async with reading.connect(
            config.upstream.url,
            config.upstream.token,
            concurrency=config.upstream.concurrency,
            timeout=config.upstream.timeout,
            attempts=4,
            max_backoff=30.0,
        ) as upstream:
            known = reader.meta("upstream.url")
            if known and known.rstrip("/") != config.upstream.url.rstrip("/"):
                raise CheckError(f"the mirror {path} holds {known}, not {config.upstream.url}")
            checker = Checker(
                reader,
                db,
                upstream,
                config.upstream.url,
                concurrency=config.upstream.concurrency,
                sample=sample,
                resources=resources,
                progress=progress,
                rng=rng,
            )
            return await checker.run()
    finally:
        await db.close()
        await reader.close()


# -- output ------------------------------------------------------------------


def format_text(report: Report) -> str:
    """The report for people: a summary table, then the differences."""
    mode = "full check" if report.sample is None else f"sample of {report.sample} per resource"
    lines = [
        f"upstream  {report.upstream} ({mode}: {report.requests:,} requests, "
        f"{report.seconds:,.1f} s)",
        f"mirror    {report.mirror} (cursor {report.cursor or 'none'})",
    ]
    if not report.initial_sync_complete:
        lines.append("note      the mirror's initial sync has not completed: expect differences")
    lines += ["", f"{'resource':<16}{'checked':>9}{'missing':>9}{'extra':>9}{'differing':>11}"]
    for name, tally in report.resources.items():
        if tally.skipped:
            lines.append(f"{name:<16}  skipped: {tally.skipped}")
            continue
        row = (
            f"{name:<16}{tally.checked:>9,}{tally.missing.count:>9,}"
            f"{tally.extra.count:>9,}{tally.differing:>11,}"
        )
        notes = []
        if name in CHILDREN:
            notes.append(f"lists of {tally.parents:,} {CHILDREN[name].parent}")
        if tally.newer.count:
            notes.append(f"{tally.newer.count:,} newer than the mirror, not counted")
        lines.append(row + (f"   ({'; '.join(notes)})" if notes else ""))

    pending_seen = False

    def mark(name: str, obj_id: int) -> str:
        nonlocal pending_seen
        if report.is_pending(name, obj_id):
            pending_seen = True
            return " (pending)"
        return ""

    def group(title: str, count: int, entries: list[str]) -> None:
        lines.append(f"{title}: {count:,}")
        lines.extend(f"  {entry}" for entry in entries[:SHOWN])
        if count > min(len(entries), SHOWN):
            lines.append(f"  … and {count - min(len(entries), SHOWN):,} more")

    lines.append("")
    for name, tally in report.resources.items():
        if tally.missing.count:
            group(
                f"{name} missing from the mirror",
                tally.missing.count,
                [
                    f"{name} {i}: missing from the mirror{mark(name, i)}"
                    for i in tally.missing.items
                ],
            )
        if tally.extra.count:
            group(
                f"{name} extra in the mirror",
                tally.extra.count,
                [f"{name} {i}: gone upstream, still in the mirror" for i in tally.extra.items],
            )
        for path, capped in sorted(tally.fields.items()):
            entries = [
                f"{name} {d.obj_id} {d.path}: mirror {show(d.mirror)} upstream {show(d.upstream)}"
                + mark(name, d.obj_id)
                for d in capped.items
            ]
            group(f"{name} {path}", capped.count, entries)
        if tally.newer.count:
            group(
                f"{name} newer than the mirror's cursor (not counted)",
                tally.newer.count,
                [f"{name} {i}" for i in tally.newer.items],
            )
    if pending_seen:
        lines.append(
            "(pending): named by an event newer than the mirror's cursor; "
            "the sync applies it at its next poll"
        )
    if lines[-1]:
        lines.append("")
    total = report.differences
    if total:
        drifted = sum(1 for t in report.resources.values() if t.differences)
        lines.append(f"drift: {total:,} differences in {drifted} resources")
    else:
        lines.append("no differences")
    return "\n".join(lines)


DESCRIPTION = """\
Compare the mirror with upstream, object by object, as clients would see
them: each mirrored object is rendered by the gateway's own code (with
upstream's origin) and compared with upstream's answer at API 1.4.

Without --sample, every page of every list is read (about the requests of
an initial sync); comments and checks are read for every patch or cover
that may have any, and 100 others.  With --sample N, N objects per resource
are chosen at random from both sides' ids and compared in detail, and
random list pages show objects on one side only; events, which have no
detail, are compared by whole pages.

Reported by resource: objects missing from the mirror, objects the mirror
still has that upstream no longer has, and each differing field by dotted
path (patches 12 state: mirror "new" upstream "accepted").

Rules: events newer than the mirror's cursor are listed as "newer than
the mirror" and not counted (the sync reads events up to its cursor); a
difference in an object such an event names is counted and marked
"(pending)": the sync applies it at its next poll, so run the check again
to tell lag from drift.  A user's "settings" (shown to that user alone,
and forwarded upstream by the gateway) are not compared.  Resources not
visible to the sync identity are skipped.

Exit status: 0 no differences, 1 differences, 2 error (configuration,
no mirror, upstream unreachable or refusing the token).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``check`` subcommand's arguments."""
    parser.add_argument("--config", required=True, help="TOML configuration file")
    parser.add_argument(
        "--sample",
        type=_positive,
        metavar="N",
        help="check N objects per resource, chosen at random (default: everything)",
    )
    parser.add_argument(
        "--resource",
        action="append",
        choices=ORDER,
        metavar="R",
        help=f"check only this resource (repeatable): {', '.join(ORDER)}",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document, for scripts")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def main(config: Config, args: argparse.Namespace) -> int:
    """Run ``check``: print the report; the exit status (0, 1 or 2)."""
    progress = Progress(bar=sys.stderr.isatty())
    try:
        report = asyncio.run(
            check(config, sample=args.sample, resources=args.resource, progress=progress)
        )
    except (
        CheckError,
        UpstreamError,
        SyncError,
        schema.SchemaTooNew,
        schema.LayoutMismatch,
    ) as exc:
        print(f"check: {exc}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as exc:
        print(f"check: {config.storage.path}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(orjson.dumps(report.document(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_text(report))
    return 1 if report.drift else 0
