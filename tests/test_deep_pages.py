"""Deep pages are cut from a list's ordered ids (mirror.reader): they must
be exactly the pages OFFSET gives, and follow the mirror as it changes."""

from __future__ import annotations

import pytest

from mirror import reader as reader_module
from mirror import schema, store
from mirror.store import Batch
from tests.test_gateway import _settled

LISTS = [
    "/api/1.4/patches/?per_page=7",
    "/api/1.4/patches/?project=aiohttp&order=-date&per_page=5",
    "/api/1.4/patches/?order=name&per_page=9",
    "/api/1.4/patches/?order=-submitter,date&per_page=11",
    "/api/1.4/patches/?archived=false&state=new&per_page=3",
    "/api/1.2/patches/?q=fix&per_page=4",
    "/api/1.4/patches/?q=the%20fix&order=-id&per_page=3",
    "/api/1.4/series/?q=PATCH&per_page=5",
    "/api/1.4/patches/?project=aiohttp&q=the&per_page=3",
    "/api/1.4/events/?per_page=50",
    "/api/1.4/events/?category=patch-created&order=date&per_page=20",
    "/api/1.4/covers/?order=-name&per_page=6",
    "/api/1.4/series/?per_page=8",
    "/api/1.4/patches/?order=-delegate&per_page=13",
]


async def _pages(client, url: str) -> list[tuple[int, bytes, str | None]]:
    pages = []
    page = 1
    while True:
        reply = await client.get(f"{url}&page={page}")
        pages.append((reply.status, await reply.read(), reply.headers.get("Link")))
        if reply.status != 200 or 'rel="next"' not in reply.headers.get("Link", ""):
            return pages
        page += 1


@pytest.mark.parametrize("url", LISTS)
async def test_deep_pages_equal_what_offset_gives(gateway, monkeypatch, url):
    monkeypatch.setattr(reader_module, "DEEP_OFFSET", 10**9)  # OFFSET always
    by_offset = await _pages(gateway, url)
    monkeypatch.setattr(reader_module, "DEEP_OFFSET", 0)  # ordered ids always
    by_ids = await _pages(gateway, url + "&")  # (other URLs: not the cached answers)
    assert len(by_offset) > 2, "a list with several pages"
    assert [(s, b) for s, b, _ in by_ids] == [(s, b) for s, b, _ in by_offset]


async def test_deep_pages_follow_the_mirror(gateway, monkeypatch):
    monkeypatch.setattr(reader_module, "DEEP_OFFSET", 0)
    url = "/api/1.4/patches/?per_page=10&page=40&order=id"
    before = await (await gateway.get(url)).json()
    first = before[0]["id"]
    # Upstream deletes a patch before it: every later page shifts by one.
    db = await schema.connect(gateway.mirror)
    try:
        batch = Batch()
        batch.deletions.append(("patches", first - 1))
        await store.write(db, batch)
    finally:
        await db.close()
    after = await _settled(gateway, url + "&", lambda data: data and data[0]["id"] != first)
    assert [p["id"] for p in after][:-1] == [p["id"] for p in before][1:]
