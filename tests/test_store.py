"""Writing the mirror: only what changed, and never an older reading over a newer."""

from __future__ import annotations

import sqlite3

from mirror import schema, store
from mirror.store import Batch


def _patch(state: str) -> dict:
    return {"id": 1, "name": "A patch", "state": state, "archived": False}


async def test_an_older_reading_never_replaces_a_newer_one(tmp_path):
    db = await schema.connect(tmp_path / "m.sqlite3")
    try:
        newer = Batch()
        newer.add("patches", _patch("accepted"), read_at=2000.0)  # read back after a write
        assert await store.write(db, newer) == 1
        older = Batch()
        older.add("patches", _patch("new"), read_at=1000.0)  # a sweep's page, read before it
        assert await store.write(db, older) == 0
        newest = Batch()
        newest.add("patches", _patch("rejected"), read_at=3000.0)
        assert await store.write(db, newest) == 1
        rows = await db.execute_fetchall("SELECT state_id, synced FROM patches")
        assert list(rows) == [(4, 3000.0)]  # rejected
    finally:
        await db.close()


async def test_a_batch_bringing_nothing_new_commits_nothing(tmp_path):
    path = tmp_path / "m.sqlite3"
    db = await schema.connect(path)
    watcher = sqlite3.connect(path)
    try:
        batch = Batch()
        batch.add("patches", _patch("new"))
        assert await store.write(db, batch) == 1
        before = watcher.execute("PRAGMA data_version").fetchone()
        again = Batch()
        again.add("patches", _patch("new"))
        assert await store.write(db, again) == 0
        assert watcher.execute("PRAGMA data_version").fetchone() == before
    finally:
        watcher.close()
        await db.close()
