"""Walking upstream's lists against the mirror: a top-level list whole
(page by page, the mirror's ids in each page's range) or sampled (random
pages, then objects in detail), and comments and checks, each parent's
whole list at once."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from typing import Any

from cli.check.engine import Engine, log, valid_id
from cli.check.report import Tally
from mirror.resources import RESOURCES
from sync.reading import PER_PAGE, Page, SubList, needed_parents, pool

#: Parents whose comments and checks a full check reads beyond those that
#: may have some: a test of the rule that says the others have none.
OTHER_PARENTS = 100


# -- top-level lists -------------------------------------------------------------


async def check_whole(engine: Engine, name: str, tally: Tally) -> None:
    """Every page of a list, in id order, against the mirror."""
    first = await engine.upstream.first_page(name)
    bar = engine.progress.phase(f"check {name}", first.last)
    covered: int | None = None  # ids up to this one are compared
    ended = False
    async with contextlib.aclosing(engine.upstream.pages(name, first)) as pages:
        async for page in pages:
            ended = not page.has_next
            ids = {i for i in map(valid_id, page.items) if i is not None}
            high = None if ended else max(ids, default=covered)
            await _compare_range(engine, name, page.items, covered, high, tally)
            covered = high
            bar.advance(1)
            if ended:
                break
    if not ended:  # the list shrank: the mirror's ids past the last page read
        await _compare_range(engine, name, [], covered, None, tally)
    bar.close()


async def _compare_range(
    engine: Engine, name: str, items: list[Any], low: int | None, high: int | None, tally: Tally
) -> None:
    """A page of an id-ordered list: its items, and the mirror's ids in
    ``(low, high]`` it does not hold.  An object whose detail the mirror
    lacks (its message) is compared in detail instead."""
    res = RESOURCES[name]
    listed = {i for i in map(valid_id, items) if i is not None}
    undetailed: set[int] = set()
    if res.detail_keys and listed:
        marks = ",".join("?" * len(listed))
        rows = engine.reader.rows(
            f"SELECT id FROM {res.table} WHERE id IN ({marks}) AND detail IS NULL",
            sorted(listed),
        )
        undetailed = {row[0] for row in rows}
    summary = [item for item in items if valid_id(item) not in undetailed]
    for obj_id in engine.compare_items(name, summary, tally):
        tally.missing.add(obj_id)

    async def detail(obj_id: int) -> None:
        await engine.detail(name, obj_id, tally)

    await pool(sorted(undetailed), detail, engine.concurrency)
    mirrored = engine.mirror_ids(res.table, "id", low, high, low_inclusive=False)
    for obj_id in sorted(mirrored - listed):
        tally.extra.add(obj_id)


async def check_sample(engine: Engine, name: str, tally: Tally, n: int) -> None:
    """Random pages (ids on one side only), then ``n`` objects in detail."""
    res = RESOURCES[name]
    first = await engine.upstream.first_page(name)
    last = first.last
    numbers = [1, *engine.rng.sample(range(2, last + 1), min(last - 1, math.ceil(n / PER_PAGE)))]
    pages: dict[int, Page] = {1: first}

    async def fetch(number: int) -> None:
        got = await engine.upstream.page(name, number)
        if got is not None:
            pages[number] = got

    await pool(numbers[1:], fetch, engine.concurrency)
    upstream: set[int] = set()
    mirrored_only: set[int] = set()
    for number, page in sorted(pages.items()):
        ids = {i for i in map(valid_id, page.items) if i is not None}
        if not ids and number != 1:
            continue
        low = None if number == 1 else min(ids)
        high = max(ids) if page.has_next and ids else None
        mirrored = engine.mirror_ids(res.table, "id", low, high, low_inclusive=True)
        for obj_id in sorted(ids - mirrored):
            tally.missing.add(obj_id)
        for obj_id in sorted(mirrored - ids):
            tally.extra.add(obj_id)
            mirrored_only.add(obj_id)
        upstream |= ids & mirrored
    engine.seen_upstream[name] = upstream
    chosen = _choose(engine, n, engine.random_ids(res.table, n), upstream, mirrored_only)
    bar = engine.progress.phase(f"check {name} (sample)", len(chosen))

    async def one(obj_id: int) -> None:
        await engine.detail(name, obj_id, tally)
        bar.advance(1)

    await pool(chosen, one, engine.concurrency)
    bar.close()


def _choose(
    engine: Engine, n: int, mirror: Iterable[int], upstream: Iterable[int], known: set[int]
) -> list[int]:
    """N ids, half from each side's (a side short of ids: more of the other)."""
    mine = sorted(set(mirror) - known)
    theirs = sorted(set(upstream) - known)
    chosen = set(engine.rng.sample(mine, min(len(mine), math.ceil(n / 2))))
    rest = sorted(set(theirs) - chosen)
    chosen |= set(engine.rng.sample(rest, min(len(rest), n - len(chosen))))
    rest = sorted(set(mine) - chosen)
    chosen |= set(engine.rng.sample(rest, min(len(rest), n - len(chosen))))
    return sorted(chosen)


# -- comments and checks ---------------------------------------------------------


async def check_children(engine: Engine, sub: SubList, tally: Tally) -> None:
    """The lists of the parents that may have children (a full check: with
    100 others), or of ``sample`` parents, half of them holding some."""
    res = RESOURCES[sub.child]
    parents_table = RESOURCES[sub.parent].table
    assert res.parent is not None
    rows = engine.reader.rows(f"SELECT DISTINCT {res.parent.column} FROM {res.table}")
    holding = {row[0] for row in rows if row[0] is not None}
    if engine.sample is None:
        parents = holding | engine.announced[sub.child] | await needed_parents(engine.db, sub)
        drawn = engine.random_ids(parents_table, OTHER_PARENTS + len(parents))
        others = sorted(set(drawn) - parents)
        parents |= set(engine.rng.sample(others, min(len(others), OTHER_PARENTS)))
    else:
        n = engine.sample
        parents = set(engine.rng.sample(sorted(holding), min(len(holding), math.ceil(n / 2))))
        candidates = set(engine.random_ids(parents_table, n))
        candidates |= engine.seen_upstream.get(sub.parent, set())
        rest = sorted(candidates - parents)
        parents |= set(engine.rng.sample(rest, min(len(rest), n - len(parents))))
    tally.parents = len(parents)
    bar = engine.progress.phase(f"check {sub.child} of {sub.parent}", len(parents))

    async def one(parent_id: int) -> None:
        await _one_parent(engine, sub, parent_id, tally)
        bar.advance(1)

    await pool(sorted(parents), one, engine.concurrency)
    bar.close()


async def _one_parent(engine: Engine, sub: SubList, parent_id: int, tally: Tally) -> None:
    """One parent's whole list (it is small) against the mirror's."""
    res = RESOURCES[sub.child]
    assert res.parent is not None
    # (Empty if the parent is gone upstream.)
    items = await engine.upstream.whole_list(sub.child, parent_id)
    docs = engine.reader.children(res.table, res.parent.column, parent_id)
    mine = engine.render(sub.child, docs, detail=False)
    listed: set[int] = set()
    for item in items:
        obj_id = valid_id(item)
        if obj_id is None:
            log.warning("%s: upstream listed a malformed object: %.80r", sub.child, item)
        elif obj_id in listed:
            continue
        elif obj_id in mine:
            engine.compare(sub.child, obj_id, mine[obj_id], item, tally)
        else:
            tally.missing.add(obj_id)
        if obj_id is not None:
            listed.add(obj_id)
    # Read whole (or gone): what the mirror holds beyond it is extra.
    for obj_id in sorted(set(mine) - listed):
        tally.extra.add(obj_id)
