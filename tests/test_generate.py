"""The synthetic mirror the benchmarks serve is a mirror the gateway
serves like any other: every list answers, objects link up, and deep
pages, filters and searches agree with each other."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cli.config import parse
from gateway.http.app import create_app
from mirror.reader import Reader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from generate_mirror import generate


@pytest.fixture
async def synthetic(tmp_path, aiohttp_client):
    mirror = tmp_path / "synthetic.sqlite3"
    counts = await generate(mirror, 400, seed=3, progress=False)
    config = parse({"upstream": {"url": "http://127.0.0.1:9"}, "storage": {"path": str(mirror)}})
    reader = Reader(mirror)
    await reader.open()
    client = await aiohttp_client(create_app(config.gateway, reader))
    client.counts = counts
    yield client
    await reader.close()


async def test_a_synthetic_mirror_serves_like_a_real_one(synthetic):
    assert synthetic.counts["patches"] == 400
    for resource in ("projects", "patches", "covers", "series", "events", "bundles"):
        reply = await synthetic.get(f"/api/1.4/{resource}/")
        assert reply.status == 200, resource
        assert await reply.json(), f"{resource}: some"

    patches = []
    page = 1
    while True:
        reply = await synthetic.get("/api/1.4/patches/", params={"per_page": "7", "page": page})
        patches += await reply.json()
        if 'rel="next"' not in reply.headers.get("Link", ""):
            break
        page += 1
    assert sorted(p["id"] for p in patches) == sorted({p["id"] for p in patches})
    assert len(patches) == 400

    patch = patches[123]
    detail = await (await synthetic.get(f"/api/1.4/patches/{patch['id']}/")).json()
    assert detail["diff"] and detail["headers"]
    assert detail["series"], "every patch belongs to a series"
    for series in detail["series"]:
        linked = await (await synthetic.get(f"/api/1.4/series/{series['id']}/")).json()
        assert patch["id"] in [p["id"] for p in linked["patches"]]

    word = max(patch["name"].split(), key=len).strip("\"'")
    found = []
    for page in (1, 2):
        reply = await synthetic.get(
            "/api/1.4/patches/", params={"q": word, "per_page": "250", "page": str(page)}
        )
        if reply.status == 200:
            found += [p["id"] for p in await reply.json()]
    assert patch["id"] in found, word
