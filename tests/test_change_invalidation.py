"""Caches drop what a change reaches, and nothing else.

Two gateways share one mirror: one with every cache, answering each
change the way a server does (reading the change log), the other an
oracle that drops every cache before every request.  Randomized writes go
through the store as the sync writes them; after each, randomized reads
across resources, filters, orderings, pages and versions must be the
oracle's, byte for byte.  A change is never hidden by a cache.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import orjson
import pytest

from cli.config import parse
from gateway.http.app import STATE, create_app
from mirror import reader as reader_module
from mirror import schema, store
from mirror.reader import Reader
from mirror.store import Batch
from tests.support import copy_mirror
from tests.writes import Writer, mirror_ids, stored_doc

READS = [
    "/api/1.4/patches/",
    "/api/1.4/patches/?project=patchwork",
    "/api/1.4/patches/?project=2&order=-date",
    "/api/1.4/patches/?project=1&state=new&state=accepted",
    "/api/1.4/patches/?archived=false&order=name&per_page=7&page=2",
    "/api/1.4/patches/?submitter=1&order=-id",
    "/api/1.4/patches/?order=check&per_page=5",
    "/api/1.1/patches/?project=1&per_page=250",
    "/api/patches/?q=patch&per_page=9",
    "/api/1.4/covers/?project=1",
    "/api/1.4/series/?project=1&order=-id",
    "/api/1.0/series/",
    "/api/1.4/events/?project=1&per_page=50",
    "/api/1.4/events/?category=check-created",
    "/api/1.4/projects/",
    "/api/1.4/projects/1/",
    "/api/1.4/projects/patchwork/",
    "/api/1.4/bundles/",
    "/api/1.4/patches/?per_page=3&page=1&format=api",
    # Deep pages (their ordered ids revised, where DEEP_OFFSET is 0).
    "/api/1.4/patches/?project=1&order=-date&per_page=20&page=5",
    "/api/1.4/patches/?order=name&per_page=30&page=3",
    "/api/1.4/patches/?project=patchwork&state=new&state=accepted&per_page=5&page=3",
    "/api/1.4/patches/?since=2010-01-01T00:00:00&per_page=10&page=4",
    "/api/1.4/patches/?archived=true&order=-id&per_page=10&page=6",
    "/api/1.4/patches/?before=2012-01-01&order=date&per_page=8&page=2",
    "/api/1.4/events/?order=-date&per_page=40&page=3",
    "/api/1.4/events/?project=1&category=check-created&per_page=5&page=2",
    "/api/1.2/events/?per_page=100&page=2",
    "/api/1.4/patches/1/checks/?order=-date",
    "/api/1.4/patches/?q=the%20fix&order=-id&per_page=4&page=3",
]


@pytest.fixture
async def pair(deployment, tmp_path, aiohttp_client):
    """(cached gateway, oracle gateway, mirror path) on one mirror file."""
    mirror = copy_mirror(deployment.storage, tmp_path / "mirror.sqlite3")
    settings = parse(
        {"upstream": {"url": "http://127.0.0.1:9"}, "storage": {"path": str(mirror)}}
    ).gateway
    readers = [Reader(mirror), Reader(mirror)]
    for reader in readers:
        await reader.open(3600)  # (changes are picked up when the test says)
    cached = await aiohttp_client(create_app(settings, readers[0]))
    oracle = await aiohttp_client(create_app(settings, readers[1]))
    yield cached, oracle, mirror
    for reader in readers:
        await reader.close()


async def _read(client, path: str) -> tuple[int, bytes, str | None]:
    """The answer, with the gateway's own origin (each has its port) made one."""
    reply = await client.get(path)
    origin = f"http://{client.host}:{client.port}"
    link = reply.headers.get("Link")
    return (
        reply.status,
        (await reply.read()).replace(origin.encode(), b"ORIGIN"),
        link.replace(origin, "ORIGIN") if link else None,
    )


async def _expected(oracle, path: str) -> tuple[int, bytes, str | None]:
    oracle.app[STATE].reader.invalidate()
    return await _read(oracle, path)


def _details(path: Path, rng: random.Random) -> list[str]:
    patch = rng.choice(mirror_ids(path, "patches"))
    return [
        f"/api/1.4/patches/{patch}/",
        f"/api/1.3/patches/{patch}/checks/",
        f"/api/1.4/patches/{patch}/comments/",
        f"/api/1.0/people/{rng.choice(mirror_ids(path, 'people'))}/",
        f"/api/1.4/series/{rng.choice(mirror_ids(path, 'series'))}/",
        f"/api/1.4/patches/{rng.choice([999_999, 900_001, 900_002])}/",
    ]


@pytest.mark.parametrize("deep", [False, True], ids=["pages", "ordered ids"])
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_randomized_writes_never_hide_behind_a_cache(pair, seed, deep, monkeypatch):
    """``deep``: every page is cut from the list's ordered ids, kept and
    revised by the changes (else only pages past DEEP_OFFSET are)."""
    if deep:
        monkeypatch.setattr(reader_module, "DEEP_OFFSET", 0)
    cached, oracle, mirror = pair
    rng = random.Random(seed)
    writer = Writer(mirror, rng)
    db = await schema.connect(mirror)
    reader = cached.app[STATE].reader
    try:
        for path in READS:  # every list cached, once
            await _read(cached, path)
        for step in range(25):
            for _ in range(rng.randint(1, 3)):
                batch, kind = writer.batch()
                await store.write(db, batch)
            reader.check_changes()
            paths = rng.sample(READS, 8) + _details(mirror, rng)
            for path in paths:
                for _ in range(2):  # built, then from the caches
                    got = await _read(cached, path)
                    assert got == await _expected(oracle, path), (seed, step, kind, path)
    finally:
        await db.close()


async def test_an_answer_no_change_reaches_keeps_its_bytes_and_etag(pair):
    cached, _, mirror = pair
    state = cached.app[STATE]
    other = "/api/1.4/patches/?project=2&per_page=5"
    first = await cached.get(other)
    etag = first.headers["ETag"]
    db = await schema.connect(mirror)
    try:
        patch = mirror_ids(mirror, "patches", "WHERE project_id = 1")[0]
        batch = Batch()
        batch.add("patches", {"id": patch, "state": "rejected"})
        await store.write(db, batch)
    finally:
        await db.close()
    assert state.reader.check_changes()
    hits = state.cache.hits
    again = await cached.get(other, headers={"If-None-Match": etag})
    assert again.status == 304
    assert state.cache.hits == hits + 1, "answered from the cache, not built again"
    mine = await cached.get(f"/api/1.4/patches/{patch}/")
    assert (await mine.json())["state"] == "rejected"


async def _add_patch(mirror: Path, project: int) -> int:
    """A new patch at the end of ``project``'s list (the highest id)."""
    doc = stored_doc(mirror, "patches", mirror_ids(mirror, "patches")[-1])
    new = max(mirror_ids(mirror, "patches")) + 1
    doc.update(id=new, project=project, msgid=f"<{new}@example>", hash=f"{new:040x}")
    db = await schema.connect(mirror)
    try:
        batch = Batch()
        batch.add("patches", doc)
        await store.write(db, batch)
    finally:
        await db.close()
    return new


def _patches_in_project_1(mirror: Path) -> int:
    return len(mirror_ids(mirror, "patches", "WHERE project_id = 1"))


async def test_a_full_page_keeps_its_answer_when_a_patch_lands_after_it(pair):
    cached, oracle, mirror = pair
    state = cached.app[STATE]
    count = _patches_in_project_1(mirror)
    # (A page size that leaves the number of pages as it is after one more.)
    size = next(n for n in range(2, count) if math.ceil(count / n) == math.ceil((count + 1) / n))
    first = f"/api/1.4/patches/?project=1&per_page={size}"
    etag = (await cached.get(first)).headers["ETag"]
    last = f"/api/1.4/patches/?project=1&per_page={size}&page=last"
    await cached.get(last)

    new = await _add_patch(mirror, 1)
    assert state.reader.check_changes()
    hits = state.cache.hits
    again = await cached.get(first, headers={"If-None-Match": etag})
    assert again.status == 304, "rows and links as they were: the cached answer stands"
    assert state.cache.hits == hits + 1
    assert await _read(cached, last) == await _expected(oracle, last)
    assert new in [p["id"] for p in orjson.loads((await _read(cached, last))[1])]

    # Enough more to add a page: the first page's links name it.
    while math.ceil(_patches_in_project_1(mirror) / size) == math.ceil(count / size):
        await _add_patch(mirror, 1)
    assert state.reader.check_changes()
    assert await _read(cached, first) == await _expected(oracle, first)
    assert (await cached.get(first, headers={"If-None-Match": etag})).status == 200


async def test_a_reader_behind_the_trimmed_log_drops_everything(pair):
    cached, _, mirror = pair
    state = cached.app[STATE]
    path = "/api/1.4/projects/"
    await cached.get(path)
    assert len(state.cache)
    db = await schema.connect(mirror)
    try:
        batch = Batch()
        batch.add("patches", {"id": mirror_ids(mirror, "patches")[0], "state": "rejected"})
        await store.write(db, batch)
        assert await store.trim_changes(db, days=0.0) >= 1
    finally:
        await db.close()
    assert state.reader.check_changes()
    assert len(state.cache) == 0
