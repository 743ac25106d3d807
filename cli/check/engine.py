"""Both sides of a check, and comparing them: upstream read as the sync
reads it (``sync.reading``), the mirror rendered by the gateway's own code
(``gateway.api.render``) with upstream's origin, compared field by field
into the report.  Which objects are compared is the walks' business
(``cli.check.lists``, ``cli.check.events``)."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import Any

import aiosqlite
import orjson

from cli.check.report import ABSENT, Report, Tally
from gateway.api.render import Context, Embeds, embedded_refs, renderer
from gateway.responses import json_body
from mirror.model import Doc
from mirror.reader import Reader
from mirror.resources import RESOURCES
from mirror.versions import LATEST
from sync.reading import CURSOR, SUBLISTS, Progress, Refused, UpstreamError, UpstreamReader

#: The check's logger, whichever of its modules speaks.
log = logging.getLogger("cli.check")


class CheckError(Exception):
    """The check cannot run (no mirror, another upstream's mirror...)."""


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


def valid_id(item: Any) -> int | None:
    """The id of an object upstream listed (None: a malformed one)."""
    if isinstance(item, dict) and type(item.get("id")) is int:
        return int(item["id"])
    return None


class Engine:
    """Compares one upstream with the mirror a :class:`Reader` reads, and
    keeps what the walks learn on the way."""

    def __init__(
        self,
        reader: Reader,
        db: aiosqlite.Connection,
        upstream: UpstreamReader,
        base_url: str,
        *,
        concurrency: int = 4,
        sample: int | None = None,
        progress: Progress | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.reader = reader
        #: The mirror for the sync's own rules (which parents may have children).
        self.db = db
        self.upstream = upstream
        self.base_url = base_url.rstrip("/")
        self.concurrency = concurrency
        self.sample = sample
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

    # -- the mirror's side -----------------------------------------------------

    def render(self, name: str, docs: list[Doc], detail: bool) -> dict[int, Any]:
        """``docs`` as the gateway renders them in one answer, by id."""
        refs = [ref for doc in docs for ref in embedded_refs(name, doc)]
        embeds = Embeds(self.reader.docs(refs))
        render = renderer(name, LATEST, detail)
        return {doc["id"]: orjson.loads(json_body(render(doc, embeds, self.ctx))) for doc in docs}

    def mirror_ids(
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

    def random_ids(self, table: str, n: int) -> list[int]:
        rows = self.reader.rows(f"SELECT id FROM {table} ORDER BY random() LIMIT ?", (n,))
        return [row[0] for row in rows]

    # -- comparing -------------------------------------------------------------

    def compare(self, name: str, obj_id: int, mine: Any, theirs: Any, tally: Tally) -> None:
        """One object, as the mirror renders it and as upstream shows it."""
        if name == "users" and isinstance(theirs, dict):
            theirs = {k: v for k, v in theirs.items() if k != "settings"}  # rule 3
        tally.checked += 1
        differs = False
        for path, m, u in diff(mine, theirs):
            differs = True
            tally.differ(obj_id, path, m, u)
        if differs:
            tally.differing += 1

    def compare_items(self, name: str, items: list[Any], tally: Tally) -> list[int]:
        """Compare list items with the mirror's; the ids of those it lacks."""
        res = RESOURCES[name]
        ids = [i for i in map(valid_id, items) if i is not None]
        found = self.reader.docs((res.table, i) for i in ids)
        docs = [found[(res.table, i)] for i in dict.fromkeys(ids) if (res.table, i) in found]
        mine = self.render(name, docs, detail=False)
        lacking = []
        for item in items:
            obj_id = valid_id(item)
            if obj_id is None:
                log.warning("%s: upstream listed a malformed object: %.80r", name, item)
            elif obj_id in mine:
                self.compare(name, obj_id, mine[obj_id], item, tally)
            else:
                lacking.append(obj_id)
        return lacking

    async def detail(self, name: str, obj_id: int, tally: Tally) -> None:
        """Compare one object's detail."""
        theirs = await self.upstream.detail(name, obj_id)
        doc = self.reader.full(RESOURCES[name].table, obj_id)
        if theirs is None:
            if doc is not None:
                tally.extra.add(obj_id)
        elif doc is None:
            tally.missing.add(obj_id)
        else:
            mine = self.render(name, [doc], detail=True)[obj_id]
            self.compare(name, obj_id, mine, theirs, tally)
