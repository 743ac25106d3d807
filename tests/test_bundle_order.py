"""A bundle's patch order lives in the mirror: the sync reads it from
upstream's mbox when a bundle is new or its patches change, and a gateway
started with upstream down serves the bundle's mbox byte for byte."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from mirror import schema, store
from mirror.store import Batch
from sync.fetch import mbox_patch_ids
from sync.refresh import Wanted
from tests.fake import CIBOT, FakePatchwork
from tests.mirroring import TOKEN, Writes, fake_upstream, serve, worker
from tests.support import (
    GatewayProcess,
    as_written_by_schema,
    free_port,
    request,
    run_cli,
    write_config,
)


def _orders(path: Path) -> dict[int, list[int]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT bundle_id, ids FROM bundle_orders").fetchall()
    finally:
        conn.close()
    return {bundle_id: orjson.loads(ids) for bundle_id, ids in rows}


def _upstream_orders(fake: FakePatchwork) -> dict[int, list[int]]:
    """Each public bundle's patches in its own order (as its mbox lists them):
    only public bundles' mboxes are built from the mirror."""
    bundles = {i: fake.get("bundles", i) for i in fake.ids("bundles")}
    return {i: b["patches"] for i, b in bundles.items() if b and b["public"]}


def _mbox_path(fake: FakePatchwork, bundle_id: int) -> str:
    bundle = fake.get("bundles", bundle_id)
    assert bundle is not None
    owner = fake.get("users", bundle["owner"])
    assert owner is not None
    return f"/bundle/{owner['username']}/{bundle['name']}/mbox/"


def _scrambled(fake: FakePatchwork, count: int, skip: int = 0) -> list[int]:
    """Patches of project 1 in an order neither by id nor by date."""
    ids = [i for i in fake.ids("patches") if fake.get("patches", i)["project"] == 1]  # type: ignore[index]
    chosen = ids[skip : skip + count]
    return chosen[1::2][::-1] + chosen[::2]


def test_the_ids_are_read_from_each_messages_headers_only():
    mbox = (
        b"From patchwork Mon Jan  1 00:00:00 2024\nX-Patchwork-Id: 7\nSubject: a\n\n"
        b"A body that quotes\nX-Patchwork-Id: 99\n\n"
        b"From patchwork Mon Jan  1 00:00:01 2024\nSubject: b\nX-Patchwork-Id: 3\r\n\nbody\n"
        b"From patchwork Mon Jan  1 00:00:02 2024\nX-Patchwork-Id: 5\n"
    )
    assert mbox_patch_ids(mbox) == [7, 3, 5]
    assert mbox_patch_ids(b"") == []


async def test_an_order_is_written_with_its_bundle_and_goes_with_it(tmp_path):
    path = tmp_path / "m.sqlite3"
    db = await schema.connect(path)
    watcher = Writes(path)
    try:
        batch = Batch()
        batch.add("bundles", {"id": 1, "name": "b", "patches": [3, 1, 2], "public": True})
        batch.bundle_orders[1] = [3, 1, 2]
        batch.bundle_orders[2] = [5, 4]  # a bundle the mirror does not hold
        assert await store.write(db, batch) == 2
        assert _orders(path) == {1: [3, 1, 2]}

        watcher.close()
        watcher = Writes(path)
        again = Batch()
        again.bundle_orders[1] = [3, 1, 2]
        assert await store.write(db, again) == 0
        assert not watcher.seen(), "the same order writes nothing"

        gone = Batch()
        gone.deletions.append(("bundles", 1))
        assert await store.write(db, gone) == 1
        assert _orders(path) == {}
    finally:
        watcher.close()
        await db.close()


def test_a_version_5_mirror_is_migrated(tmp_path):
    path = tmp_path / "v5.sqlite3"
    schema.prepare(path)
    as_written_by_schema(path, 5, "DROP TABLE bundle_orders")

    schema.prepare(path)  # refuses a layout it does not expect

    assert _orders(path) == {}
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (schema.SCHEMA_VERSION,)
    finally:
        conn.close()


async def test_the_sync_reads_each_order_once_and_again_when_the_patches_change(tmp_path):
    fake = fake_upstream()
    mirror = tmp_path / "m.sqlite3"
    with serve(fake) as url:
        async with worker(mirror, url) as sync:
            await sync.once()
            assert _orders(mirror) == _upstream_orders(fake)

            new = fake.create_bundle(1, CIBOT, "new-bundle", _scrambled(fake, 5), public=True)
            fake.update("bundles", 1, patches=_scrambled(fake, 4, skip=10))
            fake.delete_bundle(3)
            fake.reset_requests()
            await sync.sweeper.full_round()

            read = sorted(path for path in fake.request_log if "/bundle/" in path)
            assert read == sorted(f"GET {_mbox_path(fake, i)}" for i in (1, new))
            assert _orders(mirror) == _upstream_orders(fake)
            assert 3 not in _orders(mirror)

            # Nothing changed: no mbox read again, nothing written.
            fake.reset_requests()
            writes = Writes(mirror)
            await sync.sweeper.full_round()
            assert not [path for path in fake.request_log if "/bundle/" in path]
            assert not writes.seen()
            writes.close()


async def test_a_bundle_read_back_after_a_write_has_its_order_read_too(tmp_path):
    """What the gateway's read-back of a bundle write does (gateway.upstream.readback)."""
    fake = fake_upstream()
    mirror = tmp_path / "m.sqlite3"
    with serve(fake) as url:
        async with worker(mirror, url) as sync:
            await sync.once()
            fake.update("bundles", 5, patches=_scrambled(fake, 6, skip=20))
            batch = await sync.follower.refresher.collect(Wanted(details={("bundles", 5)}))
            await store.write(sync.db, batch)
            assert _orders(mirror)[5] == _upstream_orders(fake)[5]


@pytest.fixture
def fake_with_a_scrambled_bundle() -> tuple[FakePatchwork, int]:
    fake = fake_upstream()
    bundle = fake.create_bundle(1, CIBOT, "scrambled", _scrambled(fake, 7), public=True)
    return fake, bundle


@pytest.mark.slow
def test_a_gateway_started_with_upstream_down_serves_upstreams_bundle_mboxes(
    fake_with_a_scrambled_bundle, tmp_path
):
    """Sync, stop upstream, start a new gateway process: every public bundle's
    mbox is upstream's bytes, in an order the API does not show."""
    fake, scrambled = fake_with_a_scrambled_bundle
    mirror = tmp_path / "m.sqlite3"
    public = [i for i in fake.ids("bundles") if fake.get("bundles", i)["public"]]  # type: ignore[index]
    assert scrambled in public and len(public) >= 3
    with serve(fake) as url:
        config = write_config(tmp_path / "sync.toml", url, mirror, free_port(), token=TOKEN)
        result = run_cli("sync", "--config", str(config), "--once")
        assert result.returncode == 0, result.stderr
        upstream = {}
        for bundle_id in public:
            reply = request("GET", url + _mbox_path(fake, bundle_id))
            assert reply.status == 200
            upstream[bundle_id] = reply
        listed = fake.render("bundles", scrambled)["patches"]
    api_order = [p["id"] for p in listed]
    assert mbox_patch_ids(upstream[scrambled].body) != api_order

    port = free_port()
    dead = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "serve.toml", dead, mirror, port)
    with GatewayProcess(config, port) as gateway:
        for bundle_id, expected in upstream.items():
            reply = request("GET", gateway.url + _mbox_path(fake, bundle_id))
            assert reply.status == 200, bundle_id
            assert reply.header("X-Patchwork-Gateway") == "mirror"
            assert reply.body == expected.body, bundle_id
            for name in ("Content-Type", "Content-Disposition"):
                assert reply.header(name) == expected.header(name), (bundle_id, name)


async def test_a_bundle_mbox_upstream_fails_on_stops_nothing_else(tmp_path):
    """Its order stays unknown (the API's order serves offline); the initial
    sync completes, and other bundles' orders are read."""
    fake = fake_upstream()
    public = sorted(_upstream_orders(fake))
    broken = _mbox_path(fake, public[0])
    fake.failing.add(broken)
    mirror = tmp_path / "m.sqlite3"
    with serve(fake) as url:
        async with worker(mirror, url) as sync:
            await sync.once()
    conn = sqlite3.connect(mirror)
    try:
        (state,) = conn.execute("SELECT value FROM meta WHERE key = 'sync.state'").fetchone()
    finally:
        conn.close()
    assert state == "complete"
    orders = _orders(mirror)
    assert public[0] not in orders
    assert {i: orders[i] for i in public[1:]} == {i: _upstream_orders(fake)[i] for i in public[1:]}
    assert any(path.endswith(broken) for path in fake.request_log)


async def test_a_bundle_reordered_upstream_is_reordered_by_the_slow_lane(tmp_path):
    """Patchwork's web pages reorder a bundle without changing its patches:
    no event, no API field says so; the bundle-orders lane reads it again."""
    fake = fake_upstream()
    mirror = tmp_path / "m.sqlite3"
    with serve(fake) as url:
        async with worker(mirror, url) as sync:
            await sync.once()
            bundle = sorted(_upstream_orders(fake))[0]
            reordered = list(reversed(_upstream_orders(fake)[bundle]))
            fake.update("bundles", bundle, patches=reordered)
            assert _orders(mirror)[bundle] != reordered
            (lane,) = [lane for lane in sync.sweeper.lanes if lane.name == "bundle orders"]
            await sync.sweeper.step(lane)
            while lane.page > 0:
                await sync.sweeper.step(lane)
            assert _orders(mirror)[bundle] == reordered
            # Read again unchanged: nothing written.
            writes = Writes(mirror)
            await sync.sweeper.step(lane)
            while lane.page > 0:
                await sync.sweeper.step(lane)
            assert not writes.seen()
            writes.close()
