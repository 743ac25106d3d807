"""Walking upstream's events against the mirror's, newest first, by date
(events have no detail URL); on the way, learning what they announce:
which parents have comments or checks, and which objects have changes
the sync has yet to apply (rules 1 and 2)."""

from __future__ import annotations

import contextlib
import math
from typing import Any

from cli.check.engine import Engine, valid_id
from cli.check.report import Tally
from mirror.model import Embed, Payload
from mirror.resources import RESOURCES
from sync.reading import PER_PAGE, SUBLISTS, Page, pool

#: Objects remembered as named by events newer than the cursor.
PENDING_MAX = 100_000
#: Pages of events a sample reads from the newest, looking for the cursor.
NEWER_PAGES = 20


async def check_whole(engine: Engine, tally: Tally) -> None:
    """Every page of events, each against the mirror's events of its dates."""
    first = await engine.upstream.first_page("events")
    bar = engine.progress.phase("check events", first.last)
    # Newest first: a page covers the dates from its oldest (exclusive:
    # the next page may hold more of that date) to the page before's.
    covered: str | None = None
    previous: set[int] = set()
    ended = False
    async with contextlib.aclosing(engine.upstream.pages("events", first)) as pages:
        async for page in pages:
            ended = not page.has_next
            ids = {i for i in map(valid_id, page.items) if i is not None}
            # Events pushed onto this page by newer ones were compared.
            fresh = [item for item in page.items if valid_id(item) not in previous]
            _compare_page(engine, fresh, tally)
            dates = [i["date"] for i in page.items if isinstance(i, dict) and _is_date(i)]
            low = None if ended else min(dates, default=covered)
            _extras(engine, low, covered, ids | previous, tally)
            covered, previous = low, ids
            bar.advance(1)
            if ended:
                break
    if not ended:
        _extras(engine, None, covered, previous, tally)
    bar.close()


async def check_sample(engine: Engine, tally: Tally) -> None:
    """The newest pages down to the mirror's cursor, and others at random."""
    assert engine.sample is not None
    first = await engine.upstream.first_page("events")
    last = first.last
    pages: dict[int, Page] = {1: first}
    # The newest pages, down to the cursor: what is pending.
    number, got = 1, first
    while (
        number < NEWER_PAGES
        and got.has_next
        and all(_newer(engine, i) for i in got.items if isinstance(i, dict))
    ):
        number += 1
        more = await engine.upstream.page("events", number)
        if more is None:
            break
        pages[number] = got = more
    others = range(number + 1, last + 1)
    numbers = engine.rng.sample(others, min(len(others), math.ceil(engine.sample / PER_PAGE)))

    async def fetch(number: int) -> None:
        got = await engine.upstream.page("events", number)
        if got is not None:
            pages[number] = got

    await pool(numbers, fetch, engine.concurrency)
    seen: set[int] = set()
    for number, page in sorted(pages.items()):
        fresh = [i for i in page.items if valid_id(i) not in seen]
        _compare_page(engine, fresh, tally)
        ids = {i for i in map(valid_id, page.items) if i is not None}
        seen |= ids
        dates = [i["date"] for i in page.items if isinstance(i, dict) and _is_date(i)]
        if not dates:
            continue
        # Strictly inside the page's dates (its ends may go on elsewhere);
        # the first page reaches the newest, the last the oldest.
        high = None if number == 1 else max(dates)
        low = None if not page.has_next else min(dates)
        mirrored = engine.mirror_ids("events", "date", low, high, low_inclusive=False)
        if high is not None:
            mirrored -= engine.mirror_ids("events", "date", high, high, low_inclusive=True)
        for obj_id in sorted(mirrored - ids):
            tally.extra.add(obj_id)


def _compare_page(engine: Engine, items: list[Any], tally: Tally) -> None:
    """Compare a page of events; learn what the newer ones announce."""
    by_id = {valid_id(item): item for item in items}
    for obj_id in engine.compare_items("events", items, tally):
        if _newer(engine, by_id[obj_id]):
            tally.newer.add(obj_id)  # rule 1
        else:
            tally.missing.add(obj_id)
    for item in items:
        if isinstance(item, dict):
            _learn(engine, item)


def _newer(engine: Engine, event: dict[str, Any]) -> bool:
    """Whether the sync has yet to read ``event`` (it is past the cursor)."""
    date = event.get("date")
    return engine.cursor is not None and isinstance(date, str) and date > engine.cursor


def _learn(engine: Engine, event: dict[str, Any]) -> None:
    """Parents with comments or checks, and objects with changes pending."""
    category = event.get("category")
    payload = event.get("payload")
    if not isinstance(payload, dict):
        return
    for sub in SUBLISTS:
        if category == sub.announced:
            parent = RESOURCES[sub.child].parent
            assert parent is not None
            ref = valid_id(payload.get(parent.url_key))
            if ref is not None:
                engine.announced[sub.child].add(ref)
    if not _newer(engine, event) or len(engine.report.pending) >= PENDING_MAX:
        return
    for target, key in _PAYLOAD_REFS.get(str(category), ()):
        ref = valid_id(payload.get(key))
        if ref is not None:
            engine.report.pending.add((target, ref))


def _extras(
    engine: Engine, low: str | None, high: str | None, listed: set[int], tally: Tally
) -> None:
    """The mirror's events dated in ``(low, high]`` that upstream did not list."""
    mirrored = engine.mirror_ids("events", "date", low, high, low_inclusive=False)
    for obj_id in sorted(mirrored - listed):
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
