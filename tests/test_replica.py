"""Replicas: a gateway whose upstream is another gateway starts from its
snapshot and follows its change feed; its mirror then equals the source's,
object by object, through randomized writes and kills of either side.

Tier 1 is an in-process gateway on real loopback HTTP; tier 2 the sync's
replica code on its own mirror file.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import sqlite3
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from cli.config import parse
from gateway.http.app import create_app
from mirror import schema, snapshot, store
from mirror.reader import Reader
from mirror.store import Batch
from sync.replica import Replica, is_gateway
from tests.mirroring import mirror_snapshot
from tests.support import copy_mirror, free_port, write_config
from tests.writes import Writer, mirror_ids, stored_doc

TOKEN = "replicate-me-0123456789"


class Tier1:
    """A gateway on a mirror file, on a loopback port; stopped and started at will."""

    def __init__(self, mirror: Path, tmp: Path) -> None:
        self.mirror = mirror
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = parse(
            {
                "upstream": {"url": "http://127.0.0.1:9"},
                "storage": {"path": str(mirror)},
                "server": {"refresh_interval": 0.05, "replication_token": TOKEN},
            }
        )
        self.runner: web.AppRunner | None = None
        self.reader: Reader | None = None
        #: Requests answered, whatever their path.
        self.requests = 0

    async def _count(self, request: web.Request, response: web.StreamResponse) -> None:
        self.requests += 1

    async def start(self) -> None:
        self.reader = Reader(self.mirror)
        await self.reader.open(0.05)
        app = create_app(self.config.gateway, self.reader)
        app.on_response_prepare.append(self._count)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.reader is not None:
            await self.reader.close()
            self.reader = None


@pytest.fixture
async def tier1(deployment, tmp_path):
    server = Tier1(copy_mirror(deployment.storage, tmp_path / "tier1.sqlite3"), tmp_path)
    await server.start()
    yield server
    await server.stop()


async def _equal(tier1: Path, tier2: Path) -> None:
    origin = "http://gateway"
    first, second = await mirror_snapshot(tier1, origin), await mirror_snapshot(tier2, origin)
    for name in first:
        assert second[name] == first[name], name


async def _write(mirror: Path, writer: Writer, count: int) -> None:
    db = await schema.connect(mirror)
    try:
        for _ in range(count):
            batch, _ = writer.batch()
            await store.write(db, batch)
    finally:
        await db.close()


async def test_a_replica_starts_from_the_snapshot_then_follows_the_feed(tier1, tmp_path):
    assert await is_gateway(tier1.url)
    tier2 = tmp_path / "tier2.sqlite3"
    replica = Replica(tier2, tier1.url, TOKEN)
    await replica.run(once=True)
    assert replica.requests <= 3, "a snapshot and one read of the feed"
    await _equal(tier1.mirror, tier2)
    writer = Writer(tier1.mirror, random.Random(7))
    await _write(tier1.mirror, writer, 25)
    await Replica(tier2, tier1.url, TOKEN).run(once=True)
    await _equal(tier1.mirror, tier2)


async def test_kills_of_either_side_lose_nothing(tier1, tmp_path):
    tier2 = tmp_path / "tier2.sqlite3"
    rng = random.Random(3)
    writer = Writer(tier1.mirror, rng)
    for round_ in range(6):
        following = asyncio.create_task(Replica(tier2, tier1.url, TOKEN).run(once=False))
        await _write(tier1.mirror, writer, rng.randint(1, 6))
        await asyncio.sleep(rng.uniform(0, 0.4))
        following.cancel()  # (killed at some moment: the cursor commits with the objects)
        await asyncio.gather(following, return_exceptions=True)
        if round_ % 2:
            await tier1.stop()  # (the source restarts; a change comes meanwhile)
            await _write(tier1.mirror, writer, 2)
            await tier1.start()
    await Replica(tier2, tier1.url, TOKEN).run(once=True)
    await _equal(tier1.mirror, tier2)


async def test_a_cursor_the_source_no_longer_keeps_starts_over_from_a_snapshot(tier1, tmp_path):
    tier2 = tmp_path / "tier2.sqlite3"
    await Replica(tier2, tier1.url, TOKEN).run(once=True)
    writer = Writer(tier1.mirror, random.Random(11))
    await _write(tier1.mirror, writer, 5)
    db = await schema.connect(tier1.mirror)
    try:
        await store.trim_changes(db, rows=1)
    finally:
        await db.close()
    for path in (tier1.mirror.with_name(tier1.mirror.name + ".snapshots")).glob("*.gz"):
        path.unlink()  # (the kept snapshot predates the writes)
    await Replica(tier2, tier1.url, TOKEN).run(once=True)
    await _equal(tier1.mirror, tier2)


def _rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return list(db.execute(sql))


async def test_the_anonymous_snapshot_holds_only_what_anonymous_callers_may_read(tier1, tmp_path):
    db = await schema.connect(tier1.mirror)
    try:  # (a person no public object names: only callers with credentials may list them)
        batch = Batch()
        batch.add("people", {"id": 990_000, "name": "Nobody Named", "email": "nobody@example"})
        await store.write(db, batch)
    finally:
        await db.close()
    async with aiohttp.ClientSession() as session:
        async with session.get(tier1.url + "/_gateway/snapshot") as resp:
            assert resp.status == 200
            assert resp.headers["X-Gateway-Snapshot"] == "public"
            packed = await resp.read()
        # An interrupted download resumes: the rest, from a byte on.
        async with session.get(
            tier1.url + "/_gateway/snapshot", headers={"Range": "bytes=1000-"}
        ) as resp:
            assert resp.status == 206
            assert await resp.read() == packed[1000:]
    public = tmp_path / "public.sqlite3"
    public.write_bytes(gzip.decompress(packed))
    assert _rows(tier1.mirror, "SELECT count(*) FROM bundles WHERE public = 0")[0][0] > 0
    assert _rows(public, "SELECT count(*) FROM bundles WHERE public = 0") == [(0,)]
    assert _rows(public, "SELECT count(*) FROM changes") == [(0,)]
    assert _rows(public, "SELECT count(*) FROM people WHERE user_id IS NOT NULL") == [(0,)]
    people = {row[0] for row in _rows(public, "SELECT id FROM people")}
    assert people and 990_000 not in people
    assert b"nobody@example" not in public.read_bytes()
    # Nothing deleted is left in the file's free pages.
    private = _rows(tier1.mirror, "SELECT name FROM bundles WHERE public = 0")
    raw = public.read_bytes()
    assert not [name for (name,) in private if name.encode() in raw]
    # The whole mirror, to the replication token only.
    full = tmp_path / "full.sqlite3.gz"
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            tier1.url + "/_gateway/snapshot", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as resp,
    ):
        assert resp.headers["X-Gateway-Snapshot"] == "full"
        full.write_bytes(await resp.read())
    installed = tmp_path / "installed.sqlite3"
    cursor = snapshot.install(full, installed)
    assert cursor == resp.headers["X-Gateway-Cursor"]
    assert _rows(installed, "SELECT count(*) FROM bundles WHERE public = 0")[0][0] > 0


READS = [
    "/api/",
    "/api/1.4/patches/?project=patchwork&order=-date&per_page=20&page=2",
    "/api/1.1/patches/?state=new&state=accepted",
    "/api/1.4/series/?per_page=5",
    "/api/covers/?q=patch",
    "/api/1.4/events/?category=check-created&per_page=50",
    "/api/1.4/projects/patchwork/",
    "/api/1.4/bundles/",
    "/api/1.3/patches/{patch}/",
    "/api/1.4/patches/{patch}/checks/",
    "/api/1.4/patches/{patch}/comments/",
    "/api/1.4/people/",
    "/project/patchwork/list/",
    "/api/patches/{patch}/",
]


async def test_sync_of_a_new_gateway_whose_upstream_is_a_gateway_replicates_it(tier1, tmp_path):
    """``sync --once`` of a new tier 2 (the command line): a few requests to
    tier 1, then tier 2's gateway answers as tier 1's."""
    tier2 = tmp_path / "tier2.sqlite3"
    config = write_config(
        tmp_path / "tier2.toml",
        tier1.url,
        tier2,
        free_port(),
        server=f'replication_token = "{TOKEN}"',
    )
    before = tier1.requests
    sync = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        "sync",
        "--config",
        str(config),
        "--once",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(sync.communicate(), 120)
    assert sync.returncode == 0, err.decode()
    assert tier1.requests - before <= 5, "the probe, the snapshot, the feed"
    await _equal(tier1.mirror, tier2)
    second = Tier1(tier2, tmp_path)
    await second.start()
    try:
        patch = mirror_ids(tier2, "patches")[7]
        async with aiohttp.ClientSession() as session:
            for path in READS:
                path = path.format(patch=patch)
                answers = []
                for server in (tier1, second):
                    async with session.get(server.url + path) as resp:
                        body = (await resp.read()).replace(server.url.encode(), b"ORIGIN")
                        answers.append((resp.status, body))
                assert answers[0] == answers[1], path
                assert answers[0][0] in (200, 403), path
    finally:
        await second.stop()


async def test_a_new_public_bundle_keeps_its_order_on_the_replica(tier1, tmp_path):
    """The API does not show a bundle's order; its mbox does, and the
    replica reads it from the source as the sync reads it upstream."""
    tier2 = tmp_path / "tier2.sqlite3"
    await Replica(tier2, tier1.url, TOKEN).run(once=True)
    bundle = stored_doc(
        tier1.mirror, "bundles", mirror_ids(tier1.mirror, "bundles", "WHERE public = 1")[0]
    )
    patches = mirror_ids(tier1.mirror, "patches", "WHERE project_id = 1")[:4]
    order = [patches[2], patches[0], patches[3], patches[1]]
    bundle.update(id=990_100, name="ordered", patches=patches, public=True)
    bundle["mbox"] = bundle["mbox"].replace(str(bundle["mbox"].split("/")[-3]), "ordered")
    db = await schema.connect(tier1.mirror)
    try:
        batch = Batch()
        batch.add("bundles", bundle)
        batch.bundle_orders[990_100] = order
        await store.write(db, batch)
    finally:
        await db.close()
    await Replica(tier2, tier1.url, TOKEN).run(once=True)
    query = "SELECT ids FROM bundle_orders WHERE bundle_id = 990100"
    assert (
        _rows(tier2, query) == _rows(tier1.mirror, query) == [(json.dumps(order).replace(" ", ""),)]
    )


async def _cli(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, (out + err).decode()


async def test_a_replica_without_the_token_holds_what_anonymous_callers_read(tier1, tmp_path):
    """No replication token: the public snapshot and feed; the drift check
    (field by field, through tier 1's API, as an anonymous caller) finds
    no difference, before and after writes at the source."""
    tier2 = tmp_path / "tier2.sqlite3"
    config = write_config(tmp_path / "tier2.toml", tier1.url, tier2, free_port())
    code, said = await _cli("sync", "--config", str(config), "--once")
    assert code == 0, said
    assert _rows(tier2, "SELECT count(*) FROM bundles WHERE public = 0") == [(0,)]
    code, said = await _cli("check", "--config", str(config))
    assert code == 0, said[-2000:]
    # (Renames of people excepted: the feed never shows people to anonymous
    # callers, so such a replica learns them only with its next snapshot.)
    writer = Writer(tier1.mirror, random.Random(5))
    db = await schema.connect(tier1.mirror)
    try:
        written = 0
        while written < 10:
            batch, kind = writer.batch()
            if kind != "rename person":
                await store.write(db, batch)
                written += 1
    finally:
        await db.close()
    code, said = await _cli("sync", "--config", str(config), "--once")
    assert code == 0, said
    code, said = await _cli("check", "--config", str(config))
    assert code == 0, said[-2000:]
