"""Searches (``q``) narrowed by the trigram index answer exactly what
``LIKE '%term%'`` alone answers, and follow the mirror's writes."""

from __future__ import annotations

import sqlite3

import pytest

from mirror import schema, store
from mirror.query import like_escape, search_terms
from mirror.store import Batch
from tests.test_gateway import _settled

TERMS = [
    "fix",
    "FIX",
    "aiohttp",
    "Fix the",
    '"handle the"',
    "v2",  # too short for trigrams: LIKE alone
    "a_b",
    "100%",
    "e'x",
    "ñ",
    "séri",
    "ÉRIE",
    'say "hi"',
    "zzzzzz",
    "[PATCH",
    "PR #9",
]


def _like(mirror, table: str, q: str) -> list[int]:
    terms = search_terms(q)
    where = " AND ".join("name LIKE ? ESCAPE '\\'" for _ in terms) or "1"
    args = [f"%{like_escape(t)}%" for t in terms]
    conn = sqlite3.connect(mirror)
    try:
        return [
            r[0] for r in conn.execute(f"SELECT id FROM {table} WHERE {where} ORDER BY id", args)
        ]
    finally:
        conn.close()


async def _ids(client, resource: str, q: str) -> list[int]:
    found: list[int] = []
    page = 1
    while True:
        reply = await client.get(
            f"/api/1.4/{resource}/", params={"q": q, "per_page": "250", "page": str(page)}
        )
        assert reply.status == 200
        found += [item["id"] for item in await reply.json()]
        if 'rel="next"' not in reply.headers.get("Link", ""):
            return sorted(found)
        page += 1


@pytest.mark.parametrize("resource", ["patches", "covers", "series"])
async def test_indexed_searches_find_what_like_finds(gateway, resource):
    hits = 0
    for q in TERMS:
        expected = _like(gateway.mirror, resource, q)
        assert await _ids(gateway, resource, q) == expected, q
        hits += bool(expected)
    assert hits >= 5, "the terms find something"


async def test_the_index_follows_writes(gateway):
    url = "/api/1.4/patches/?q=quuxwibble"
    assert await (await gateway.get(url)).json() == []
    db = await schema.connect(gateway.mirror)
    try:
        batch = Batch()
        batch.add("patches", {"id": 5, "name": "net: quuxwibble the frobs"})
        await store.write(db, batch)
    finally:
        await db.close()
    found = await _settled(gateway, url, lambda data: data)
    assert [p["id"] for p in found] == [5]

    db = await schema.connect(gateway.mirror)
    try:
        renamed = Batch()
        renamed.add("patches", {"id": 5, "name": "net: plain again"})
        await store.write(db, renamed)
        rows = await db.execute_fetchall(
            "SELECT rowid FROM patches_search WHERE patches_search MATCH '\"quuxwibble\"'"
        )
        assert rows == [], "the old name left the index"
        gone = Batch()
        gone.deletions.append(("patches", 5))
        await store.write(db, gone)
        rows = await db.execute_fetchall("SELECT count(*) FROM patches_search WHERE rowid = 5")
        assert rows[0][0] == 0
    finally:
        await db.close()
    assert await _settled(gateway, url, lambda data: data == []) == []
