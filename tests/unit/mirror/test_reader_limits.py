"""The reader stops a query that runs too long, off the event loop and in
the ids thread alike, without costing the loop anything meanwhile; and
keeps a long read of ordered ids that the mirror's writes overtook."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mirror import reader as reader_module
from mirror import schema, store
from mirror.query import order
from mirror.reader import QueryTooSlow
from mirror.resources import RESOURCES

from .conftest import Make, patch, project

#: Never ends by itself: only an interrupt stops it.
COUNTING = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
ENDLESS = COUNTING + "SELECT count(*) FROM c"
ENDLESS_IDS = COUNTING + "SELECT x AS id FROM c"


async def test_an_endless_query_is_stopped_at_the_deadline(mirror: Make, monkeypatch):
    listing = await mirror(projects=[project(1, "p")])
    monkeypatch.setattr(reader_module, "QUERY_SECONDS", 0.3)
    ticks = 0

    async def ticking() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(ticking())
    with pytest.raises(QueryTooSlow):
        await listing.reader.fetch(ENDLESS)
    ticker.cancel()
    assert ticks >= 10  # the event loop went on meanwhile
    # The connection is back in the pool and works.
    assert await listing.reader.fetch("SELECT 1") == [(1,)]


async def test_reading_ordered_ids_is_stopped_at_the_deadline(mirror: Make, monkeypatch):
    listing = await mirror(projects=[project(1, "p")], patches=[patch(1), patch(2)])
    monkeypatch.setattr(reader_module, "IDS_SECONDS", 0.3)
    with pytest.raises(QueryTooSlow):
        listing.reader._read_ids(ENDLESS_IDS, ())
    ids, _ = listing.reader._read_ids("SELECT t.id FROM patches AS t ORDER BY t.id DESC", ())
    assert ids.tolist() == [2, 1]


@pytest.mark.parametrize(
    "order_by", ["t.date DESC, t.id", "t.id", "t.id DESC", "+t.id", "+t.id DESC"]
)
async def test_ordered_ids_come_in_the_lists_order_whatever_their_size(mirror: Make, order_by: str):
    """Small ids, ids past 2**31 and an empty list: every id once, in the
    order the list's SQL gives, whichever way the ids thread reads them."""
    small = [7, 3, 12, 5, 9]
    big = [2**31 + 5, 2**32 + 1, 40, 2**31 - 1]
    dates = {7: 3, 3: 3, 12: 1, 5: 9, 9: 2, 2**31 + 5: 4, 2**32 + 1: 4, 40: 0, 2**31 - 1: 8}
    listing = await mirror(
        projects=[project(1, "p"), project(2, "q"), project(3, "r")],
        patches=[
            patch(i, project=1 if i in small else 2, date=f"2024-01-0{dates[i] + 1}T00:00:00")
            for i in small + big
        ],
    )
    for project_id in (1, 2, 3):
        sql = f"SELECT t.id FROM patches AS t WHERE t.project_id = ? ORDER BY {order_by}"
        expected = [row[0] for row in await listing.reader.fetch(sql, [project_id])]
        ids, _ = listing.reader._read_ids(sql, (project_id,))
        assert ids.tolist() == expected
        assert len(expected) == {1: 5, 2: 4, 3: 0}[project_id]


async def test_ordered_ids_read_while_the_mirror_changes_are_kept_with_the_changes(
    mirror: Make, monkeypatch
):
    """A big list's ids take longer to read than the time between two writes
    of a live mirror (a million events: over a second).  Read while writes
    land and the reader follows them, they are revised by those writes and
    kept: not thrown away, to be read again, and thrown away again."""
    monkeypatch.setattr(reader_module, "DEEP_OFFSET", 5)
    listing = await mirror(projects=[project(1, "p")], patches=[patch(i) for i in range(1, 41)])
    reader = listing.reader
    loop = asyncio.get_running_loop()
    read = reader._read_ids
    reads = 0

    async def write_and_follow() -> None:
        db = await schema.connect(reader.path)
        try:
            batch = store.Batch()
            batch.add("patches", patch(50, date="2024-02-01T00:00:00"))  # (enters first)
            batch.add("patches", patch(3, date="2024-01-01T00:00:39"))  # (moves up)
            batch.add("patches", patch(20, state="accepted"))  # (stays: no filter on it)
            batch.deletions.append(("patches", 7))
            await store.write(db, batch)
        finally:
            await db.close()
        assert reader.check_changes()

    def read_while_the_mirror_moves(*args: Any) -> Any:
        nonlocal reads
        reads += 1
        ids = read(*args)
        if reads == 1:
            asyncio.run_coroutine_threadsafe(write_and_follow(), loop).result()
        return ids

    monkeypatch.setattr(reader, "_read_ids", read_while_the_mirror_moves)
    q = await listing.query("patches", "order=-date", "1.4", None)
    order(RESOURCES["patches"], q, 30)
    sql = f"SELECT t.id FROM patches AS t{q.where_sql()} ORDER BY {q.order_by} LIMIT 10 OFFSET ?"
    for offset in (5, 6, 30):
        count = await reader.count("patches", q)
        got = await reader.page_ids("patches", q, offset, 10, count)
        if offset == 5:
            continue  # (read before the writes: what the first readers get)
        assert got == [row[0] for row in await reader.fetch(sql, [offset])]
    assert reads == 1  # kept, with the changes
