"""Searches (``q``) narrowed by the trigram index answer exactly what
``LIKE '%term%'`` alone answers, and follow the mirror's writes."""

from __future__ import annotations

import math
import sqlite3

import pytest

from gateway.http.limits import MAX_SEARCH_TERMS
from mirror import schema, store
from mirror.query import like_escape, search_terms
from mirror.store import Batch
from tests.support import as_written_by_schema
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


def _like(mirror, table: str, q: str, project: int | None = None) -> list[int]:
    terms = search_terms(q)
    where = " AND ".join("name LIKE ? ESCAPE '\\'" for _ in terms) or "1"
    args: list[object] = [f"%{like_escape(t)}%" for t in terms]
    if project is not None:
        where += " AND project_id = ?"
        args.append(project)
    conn = sqlite3.connect(mirror)
    try:
        return [
            r[0] for r in conn.execute(f"SELECT id FROM {table} WHERE {where} ORDER BY id", args)
        ]
    finally:
        conn.close()


async def _ids(client, resource: str, q: str, per_page: int = 250, **params: str) -> list[int]:
    """Every page's ids; the pages are as many as the count says (a count
    too high would add empty pages, too low would lose rows)."""
    found: list[int] = []
    page = 1
    while True:
        reply = await client.get(
            f"/api/1.4/{resource}/",
            params={"q": q, "per_page": str(per_page), "page": str(page), **params},
        )
        assert reply.status == 200
        found += [item["id"] for item in await reply.json()]
        if 'rel="next"' not in reply.headers.get("Link", ""):
            assert page == max(1, math.ceil(len(found) / per_page)), "pages as counted"
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


@pytest.mark.parametrize("resource", ["patches", "covers", "series"])
async def test_searches_within_a_project_find_what_like_finds(gateway, resource):
    # The project is part of the index's query: by id or by name, and a
    # term that looks like the index's own mark of a project is a term.
    hits = 0
    for q in [*TERMS, "<1>", "<2>", "1>"]:
        for project, value in ((1, "1"), (2, "aiohttp"), (2, "2")):
            expected = _like(gateway.mirror, resource, q, project)
            found = await _ids(gateway, resource, q, per_page=3, project=value)
            assert found == expected, (q, value)
            hits += bool(expected)
    assert hits >= 10, "the terms find something"


async def test_a_patch_moved_to_another_project_is_found_there(gateway):
    url = "/api/1.4/patches/?q=quuxwibble&project=2"
    db = await schema.connect(gateway.mirror)
    try:
        batch = Batch()
        batch.add("patches", {"id": 5, "name": "net: quuxwibble", "project": 1})
        await store.write(db, batch)
        assert await (await gateway.get(url)).json() == []
        moved = Batch()
        moved.add("patches", {"id": 5, "name": "net: quuxwibble", "project": 2})
        await store.write(db, moved)
    finally:
        await db.close()
    found = await _settled(gateway, url, lambda data: data)
    assert [p["id"] for p in found] == [5]


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


async def test_letters_beyond_ascii_match_as_like_does(gateway):
    # LIKE folds ASCII letters only: "SÉRIE" is not "série", the Kelvin
    # sign is not "k", "ǅ" is none of "Ǆ", "ǆ"; an index folding all of
    # Unicode would answer more.
    names = {5: "net: Série of fixes", 6: "mm: 5 \u212a steps", 7: "ǅungla: driver"}
    db = await schema.connect(gateway.mirror)
    try:
        batch = Batch()
        for patch_id, name in names.items():
            batch.add("patches", {"id": patch_id, "name": name})
        await store.write(db, batch)
    finally:
        await db.close()
    await _settled(gateway, "/api/1.4/patches/?q=ungla", lambda data: data)
    for q in ("SÉRIE", "série", "SéRIE", "5 k s", "5 \u212a S", "ǆungla", "Ǆungla", "ǅUNGLA"):
        expected = _like(gateway.mirror, "patches", q)
        assert await _ids(gateway, "patches", q) == expected, q
    assert _like(gateway.mirror, "patches", "SéRIE") == [5]
    assert _like(gateway.mirror, "patches", "ǅUNGLA") == [7]


def test_a_version_7_mirror_gets_the_lower_case_index(tmp_path):
    path = tmp_path / "v7.sqlite3"
    schema.prepare(path)
    # What version 7 had: the names as they are, folded by the tokenizer.
    as_written_by_schema(
        path,
        7,
        "DROP TABLE patches_search",
        "CREATE VIRTUAL TABLE patches_search USING fts5(name, tokenize='trigram')",
        "DROP TRIGGER patches_search_insert",
        "CREATE TRIGGER patches_search_insert AFTER INSERT ON patches BEGIN "
        "INSERT INTO patches_search (rowid, name) VALUES (new.id, new.name); END",
        "INSERT INTO patches (id, name, doc) VALUES (1, 'Fix the Frobs', '{}')",
    )

    schema.prepare(path)

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (schema.SCHEMA_VERSION,)
        found = "SELECT rowid FROM patches_search WHERE patches_search MATCH ?"
        assert conn.execute(found, ('"fix the frobs"',)).fetchall() == [(1,)]
        assert conn.execute(found, ('"Fix"',)).fetchall() == []
        conn.execute("INSERT INTO patches (id, name, doc) VALUES (2, 'FIX IT', '{}')")
        assert conn.execute(found, ('"fix"',)).fetchall() == [(1,), (2,)]
    finally:
        conn.close()


async def test_a_search_of_as_many_terms_as_allowed_answers(gateway):
    # Every term in one query of the index: its query language nests each
    # AND one level deeper (at most 256).
    q = " ".join(["the", "FIX"] * (MAX_SEARCH_TERMS // 2))
    assert len(search_terms(q)) == MAX_SEARCH_TERMS
    expected = _like(gateway.mirror, "patches", q)
    assert expected, "the terms find something"
    assert await _ids(gateway, "patches", q) == expected
