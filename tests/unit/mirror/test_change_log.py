"""The change log: what mirror.store.write records, in the same transaction."""

from __future__ import annotations

import orjson
import pytest

from mirror import schema, store
from mirror.store import CHANGES_LOW, Batch
from tests.unit.mirror.conftest import patch, person, project


@pytest.fixture
async def db(tmp_path):
    conn = await schema.connect(tmp_path / "m.sqlite3")
    batch = Batch()
    for doc in (project(1, "one"), project(2, "two")):
        batch.add("projects", doc)
    batch.add("people", person(10, "a@example.org"))
    await store.write(conn, batch)
    yield conn
    await conn.close()


async def _log(db, since: int = 0) -> list[dict]:
    rows = await db.execute_fetchall(
        "SELECT seq, resource, id, op, project_id, parent_id, keys, cols, was "
        "FROM changes WHERE seq > ? ORDER BY seq",
        (since,),
    )
    names = ["seq", "resource", "id", "op", "project", "parent", "keys", "cols", "was"]
    found = [dict(zip(names, row, strict=True)) for row in rows]
    for row in found:
        for key in ("keys", "cols", "was"):
            row[key] = orjson.loads(row[key]) if row[key] else None
    return found


async def _last(db) -> int:
    return (await db.execute_fetchall("SELECT coalesce(max(seq), 0) FROM changes"))[0][0]


async def _write(db, *docs: tuple[str, dict], deletions=()) -> None:
    batch = Batch()
    for resource, doc in docs:
        batch.add(resource, doc)
    batch.deletions.extend(deletions)
    await store.write(db, batch)


async def test_a_created_object_is_logged_with_its_lists_and_columns(db):
    start = await _last(db)
    await _write(db, ("patches", patch(1)))
    (row,) = await _log(db, start)
    assert (row["resource"], row["id"], row["op"], row["project"]) == ("patches", 1, "created", 1)
    assert row["cols"]["submitter_id"] == 10
    assert row["cols"]["archived"] == 0
    assert row["was"] is None


async def test_a_change_names_its_keys_and_the_columns_it_moved(db):
    await _write(db, ("patches", patch(1)))
    start = await _last(db)
    await _write(db, ("patches", {"id": 1, "project": 2, "archived": True}))
    (row,) = await _log(db, start)
    assert row["op"] == "changed"
    assert row["keys"] == ["archived", "project"]
    assert row["project"] == 2  # the list it is in now...
    assert row["was"] == {"project_id": 1, "archived": 0}  # ...and the one it left


async def test_writing_what_is_stored_logs_nothing(db):
    await _write(db, ("patches", patch(1)))
    start = await _last(db)
    await _write(db, ("patches", patch(1)))
    assert await _log(db, start) == []


async def test_a_deletion_logs_what_went_with_it(db):
    await _write(db, ("patches", patch(1)))
    check = {"id": 5, "patch": 1, "state": "success", "date": "2024-01-02T00:00:00"}
    check |= {"user": None, "context": "ci", "target_url": None, "description": None}
    await _write(db, ("checks", check))
    start = await _last(db)
    await _write(db, deletions=[("patches", 1)])
    rows = await _log(db, start)
    assert [(r["resource"], r["id"], r["op"]) for r in rows] == [
        ("checks", 5, "deleted"),
        ("patches", 1, "deleted"),
    ]
    assert rows[0]["parent"] == 1  # the patch's checks list
    assert rows[1]["cols"]["project_id"] == 1  # as it was


async def test_trimming_keeps_the_low_water_mark(db):
    await _write(db, ("patches", patch(1)), ("patches", patch(2)))
    last = await _last(db)
    assert await store.trim_changes(db, days=365, rows=1) == last - 1
    assert [r["seq"] for r in await _log(db)] == [last]
    assert await store.get_meta(db, CHANGES_LOW) == str(last - 1)
