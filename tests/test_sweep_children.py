"""Sub-lists sweeps: a check or comment an admin deleted upstream (no event
says so, and its event goes with it) leaves the mirror, event included."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import pytest

from sync import sweep
from sync.sweep import Sweeper
from tests.mirroring import assert_mirror_equals, fake_upstream, serve, worker


@pytest.fixture
def fake():
    return fake_upstream()


def _rows(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def _round(sweeper: Sweeper, name: str) -> None:
    """One whole round of the lane ``name``, step by step, as ``run`` steps it."""
    lane = next(lane for lane in sweeper.lanes if lane.name == name)
    await sweeper.step(lane)
    while lane.page > 0:
        await sweeper.step(lane)


def _announced_child(mirror: Path, table: str, column: str) -> tuple[int, int]:
    """A child (id, parent id) that has its event in the mirror."""
    key = {"checks": "check_id", "cover_comments": "cover_comment_id"}[table]
    ((child, parent),) = _rows(
        mirror,
        f"SELECT c.id, c.{column} FROM {table} c JOIN events e ON e.{key} = c.id "
        "ORDER BY c.id LIMIT 1",
    )
    return child, parent


async def test_a_check_deleted_upstream_leaves_with_its_event(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "PARENT_CHUNK", 7)  # several chunks of parents
    mirror = tmp_path / "m.sqlite3"
    with serve(fake) as url:
        async with worker(mirror, url) as sync:
            await sync.once()
            check, patch = _announced_child(mirror, "checks", "patch_id")
            parents = [r[0] for r in _rows(mirror, "SELECT DISTINCT patch_id FROM checks")]
            assert len(parents) > 3 * 7
            fake.delete("checks", check)  # as an admin does: no event, and its event goes
            assert await sync.poll() == 0
            fake.reset_requests()

            await _round(sync.sweeper, "checks")

            # Every patch with checks once, newest first; and the patch whose
            # checks changed (its combined ``check`` too), nothing else.
            read = [re.search(r"/patches/(\d+)/checks/", path) for path in fake.request_log]
            assert [int(m.group(1)) for m in read if m] == sorted(parents, reverse=True)
            others = [path for path, m in zip(fake.request_log, read, strict=True) if not m]
            assert others == [f"GET /api/1.4/patches/{patch}/"]
            assert _rows(mirror, f"SELECT id FROM checks WHERE id = {check}") == []
            assert _rows(mirror, f"SELECT id FROM events WHERE check_id = {check}") == []
            await assert_mirror_equals(mirror, fake)


async def test_a_cover_comment_deleted_upstream_leaves_with_its_event(fake, tmp_path):
    mirror = tmp_path / "m.sqlite3"
    with serve(fake) as url:
        async with worker(mirror, url) as sync:
            await sync.once()
            comment, _ = _announced_child(mirror, "cover_comments", "cover_id")
            fake.delete("cover-comments", comment)
            assert await sync.poll() == 0

            await _round(sync.sweeper, "comments")

            assert _rows(mirror, f"SELECT id FROM cover_comments WHERE id = {comment}") == []
            assert _rows(mirror, f"SELECT id FROM events WHERE cover_comment_id = {comment}") == []
            await assert_mirror_equals(mirror, fake)


async def test_the_checks_lane_is_paced_within_the_budget(fake, tmp_path):
    """Under ``run`` the lane comes round by itself, a request at a time
    within ``sweep_budget`` (1,200 a minute here: 20 a second)."""
    mirror = tmp_path / "m.sqlite3"
    with serve(fake) as url:
        async with worker(mirror, url, budget=1200) as sync:
            await sync.once()
            check, _ = _announced_child(mirror, "checks", "patch_id")
            parents = _rows(mirror, "SELECT count(DISTINCT patch_id) FROM checks")[0][0]
            for lane in sync.sweeper.lanes:  # this lane alone, due soon
                lane.enabled = lane.name == "checks"
                lane.period = 0.5
            fake.delete("checks", check)
            loop = asyncio.get_running_loop()
            started = loop.time()
            task = asyncio.create_task(sync.run())
            try:
                async with asyncio.timeout(30):
                    while not sync.sweeper.rounds.get("checks"):
                        await asyncio.sleep(0.05)
            finally:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            # One request a parent, one for the patch whose checks changed.
            assert loop.time() - started >= 0.5 + (parents + 1 - 1) / 20
            assert _rows(mirror, f"SELECT id FROM checks WHERE id = {check}") == []
            await assert_mirror_equals(mirror, fake)
