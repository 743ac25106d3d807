"""The reader stops a query that runs too long, off the event loop and in
the ids thread alike, without costing the loop anything meanwhile."""

from __future__ import annotations

import asyncio

import pytest

from mirror import reader as reader_module
from mirror.reader import QueryTooSlow

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
