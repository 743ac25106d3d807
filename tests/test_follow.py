"""Keeping the mirror fresh: events, sweeps, writing only what changed.

A stateful fake Patchwork changes the way Patchwork does, with events
where Patchwork emits them and none where it does not; after each sync
cycle the whole mirror must equal it, object by object.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import threading

import pytest

from mirror import store
from sync.events import CURSOR
from sync.sweep import Sweeper
from sync.upstream import UpstreamError
from tests.mirroring import (
    Writes,
    assert_mirror_equals,
    fake_upstream,
    serve,
    until_mirror_equals,
    worker,
)


@pytest.fixture
def fake():
    return fake_upstream()


async def test_changes_with_events_are_applied_from_the_cursor(fake, tmp_path):
    mirror = tmp_path / "m.sqlite3"
    with serve(fake) as url:
        async with worker(mirror, url) as sync:
            await sync.once()
            await assert_mirror_equals(mirror, fake)
            cursor = await store.get_meta(sync.db, CURSOR)

            made = fake.new_series(1, ("New Person", "new@example.org"), n_patches=3, cover=True)
            patch, cover = made["patches"][0], made["cover"]
            fake.add_patch_comment(patch)
            fake.add_cover_comment(cover)
            fake.add_check(patch, 4, "fail", "ci/build")
            fake.set_state(28, "accepted", actor_id=2)
            fake.set_delegate(28, 3, actor_id=2)
            fake.set_related([28, 29, patch])
            fake.set_comment_addressed("patch", 1, True)
            before = len(fake.ids("events"))
            fake.reset_requests()

            applied = await sync.poll()

            assert applied == before - 2769
            await assert_mirror_equals(mirror, fake)
            assert await store.get_meta(sync.db, CURSOR) > cursor
            # A poll reads events and the objects they name, not lists.
            listed = [p for p in fake.request_log if "page=" in p and "/events/" not in p]
            assert [p for p in listed if "/comments/" not in p and "/checks/" not in p] == []

            # Nothing new: a poll applies nothing, and writes nothing.
            writes = Writes(mirror)
            assert await sync.poll() == 0
            assert not writes.seen()
            writes.close()


async def test_changes_without_events_are_found_by_sweeps(fake, tmp_path):
    mirror = tmp_path / "m.sqlite3"
    with serve(fake) as url:
        async with worker(mirror, url) as sync:
            await sync.once()
            fake.set_archived(10, True)
            fake.set_archived(600, False)
            fake.set_commit_ref(11, "0123456789abcdef0123456789abcdef01234567")
            fake.set_pull_url(12, "https://git.example.org/pull/1")
            fake.rename("patches", 13, "A renamed patch")
            fake.rename("covers", 2, "A renamed cover")
            fake.rename("series", 3, "A renamed series")
            fake.update("projects", 2, web_url="https://aiohttp.example.org/")
            fake.rename_person(7, "Ada King")
            fake.update("users", 3, first_name="Andy")
            bundle = fake.create_bundle(1, 4, "new-bundle", [28, 29], public=True)
            fake.update("bundles", bundle, public=False)
            fake.delete_bundle(1)
            fake.delete("patches", 40)
            fake.delete("patch-comments", 2)

            assert await sync.poll() == 0  # no event says any of it
            await sync.sweeper.full_round()
            await assert_mirror_equals(mirror, fake)

            # Swept again with nothing new: nothing is written.
            writes = Writes(mirror)
            await sync.sweeper.full_round()
            assert not writes.seen()
            writes.close()


async def test_purged_events_leave_the_mirror(fake, tmp_path):
    mirror = tmp_path / "m.sqlite3"
    with serve(fake) as url:
        async with worker(mirror, url, overlap=0) as sync:
            await sync.once()
            assert fake.purge_events_before("2026-11-24T01:19:00") > 0
            await sync.sweeper.full_round()
            await assert_mirror_equals(mirror, fake)


async def test_events_committed_late_are_caught_by_the_wider_poll(fake, tmp_path):
    """An event dated before the cursor (its transaction committed late)."""
    mirror = tmp_path / "m.sqlite3"
    with serve(fake) as url:
        async with worker(mirror, url, overlap=60) as sync:
            await sync.once()
            cursor = dt.datetime.fromisoformat(await store.get_meta(sync.db, CURSOR))
            fake._clock = cursor - dt.timedelta(seconds=30)  # a late commit's date
            fake.set_state(28, "rejected")
            assert await sync.poll() == 0  # from the cursor on: not there
            sync.follower._wide_at = -math.inf  # a minute later
            assert await sync.poll() == 1
            await assert_mirror_equals(mirror, fake)


async def test_continuous_sync_converges_within_the_budget(fake, tmp_path):
    """`run`'s loops: changes of both kinds served, requests paced."""
    mirror = tmp_path / "m.sqlite3"
    with serve(fake) as url:
        async with worker(
            mirror, url, poll_interval=0.2, budget=1200, interval=2, hot_interval=1
        ) as sync:
            await sync.once()
            task = asyncio.create_task(sync.run())
            try:
                fake.set_state(30, "rejected")
                fake.set_archived(31, True)
                fake.rename("patches", 700, "Renamed while following")
                fake.add_check(32, 4, "success", "ci")
                await until_mirror_equals(mirror, fake, 10)
                # Within the budget: 1,200 a minute is 20 a second, plus polls.
                fake.reset_requests()
                await asyncio.sleep(2)
                assert fake.requests <= 2 * 20 + 2 * 5 + 10
            finally:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task


async def test_a_poll_failing_midway_applies_nothing_and_recovers(fake, tmp_path):
    """Upstream fails while a poll fetches what events name: the mirror shows
    none of it (not the events, not the objects, not the cursor), and the
    next poll applies it all."""
    mirror = tmp_path / "m.sqlite3"
    with serve(fake) as url:
        async with worker(mirror, url) as sync:
            await sync.once()
            fake.new_series(2, n_patches=4, cover=True)
            fetched = []

            def fail_midway(path: str) -> None:
                if "/events/" not in path:
                    fetched.append(path)
                    fake.down = len(fetched) >= 3

            fake.on_request = fail_midway
            writes = Writes(mirror)
            with pytest.raises(UpstreamError):
                await sync.poll()
            assert len(fetched) >= 3
            assert not writes.seen()
            writes.close()

            fake.down, fake.on_request = False, None
            assert await sync.poll() > 0
            await assert_mirror_equals(mirror, fake)


def test_sweep_lanes_take_turns_by_priority_period_and_share():
    now = [0.0]
    sweeper = Sweeper(None, None, None, None, interval=120, hot_interval=30, clock=lambda: now[0])  # type: ignore[arg-type]
    lanes = {lane.name: lane for lane in sweeper.lanes}
    for lane in sweeper.lanes:  # every lane mid-round: all want a turn
        lane.page = 1
    turns: dict[str, int] = dict.fromkeys(lanes, 0)
    for _ in range(2000):
        lane = sweeper.choose(now[0])
        assert lane is not None
        turns[lane.name] += 1
        for other in sweeper.lanes:
            other.served *= 0.99
        lane.served += 1
    # A lane with a minimum share gets it; the first lane takes the rest.
    for name, lane in lanes.items():
        if lane.min_share:
            assert turns[name] >= 0.8 * lane.min_share * 2000, name
    assert max(turns, key=turns.__getitem__) == sweeper.lanes[0].name

    # Between rounds, a lane waits for its period.
    hot = lanes["newest patches"]
    hot.page, hot.started = 0, now[0]
    now[0] += 29
    assert not sweeper._ready(hot, now[0])
    now[0] += 1
    assert sweeper._ready(hot, now[0])


async def test_an_event_seen_before_its_change_is_committed(fake, tmp_path):
    """Patchwork commits a state or delegate event before the patch itself:
    the poll that sees the event reads the patch again until it shows it."""
    mirror = tmp_path / "m.sqlite3"
    with serve(fake) as url:
        async with worker(mirror, url) as sync:
            await sync.once()
            fake.set_state(50, "accepted")
            fake.set_delegate(50, 3)

            def stored(state: str, delegate: int | None) -> None:
                """Upstream's row for patch 50, under its events' feet."""
                with fake._lock:
                    fake._objects["patches"][50].update(state=state, delegate=delegate)

            stored("new", None)  # the events are there; the change is not, yet
            commit = threading.Timer(0.3, stored, ("accepted", 3))
            commit.start()
            try:
                assert await sync.poll() == 2
            finally:
                commit.join()
            await assert_mirror_equals(mirror, fake)


async def test_idle_polls_stop_reading_the_overlap_once_nothing_can_come_late(fake, tmp_path):
    """A freshly loaded upstream has thousands of events within a minute:
    re-reading them at every poll would cost pages, forever."""
    now = [0.0]
    mirror = tmp_path / "m.sqlite3"
    with serve(fake) as url:
        async with worker(mirror, url, overlap=60) as sync:
            sync.follower.clock = lambda: now[0]
            await sync.once()  # its poll, at 0 s, reads the last minute again
            requests = []
            for _ in range(20):  # then 200 s of polls, every 10 s
                now[0] += 10
                fake.reset_requests()
                await sync.poll()
                requests.append(fake.requests)
            # At 60 s the last minute is read once more, and never again:
            # every other poll asks for the newest event's page, nothing more.
            assert requests[5] > 3
            assert requests[:5] + requests[6:] == [1] * 19
            fake.set_state(28, "accepted")
            assert await sync.poll() == 1
