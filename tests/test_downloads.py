"""Downloads built from the mirror are upstream's bytes: every patch, cover
and series mbox recorded in the crawl, with its headers, upstream down."""

from __future__ import annotations

import json
import lzma
import re
import sqlite3

import pytest

from cli.config import parse
from gateway.http.app import STATE, create_app
from mirror.reader import Reader
from tests.support import CRAWL, auth_header, copy_mirror, tokens


def _recorded() -> list[dict]:
    with lzma.open(CRAWL, "rt") as lines:
        return [
            json.loads(line)
            for line in lines
            if '"crawl.mbox.' in line or '"crawl.detail.patches"' in line
        ]


RECORDED = _recorded()
MBOXES = [
    r
    for r in RECORDED
    if r["family"] in ("crawl.mbox.patch", "crawl.mbox.cover", "crawl.mbox.series")
]
PATCHES = [r["body"] for r in RECORDED if r["family"] == "crawl.detail.patches"]


async def test_every_recorded_mbox_is_built_byte_for_byte(gateway):
    assert len(MBOXES) > 1000
    for record in MBOXES:
        reply = await gateway.get(record["path"])
        assert reply.status == 200, record["path"]
        assert reply.headers["X-Patchwork-Gateway"] == "mirror", "not from upstream"
        assert await reply.text() == record["body"], record["path"]
        for name in ("Content-Type", "Content-Disposition"):
            assert reply.headers[name] == record["headers"][name], (record["path"], name)


async def test_raw_diffs_and_series_dependencies(gateway):
    patch = next(p for p in PATCHES if p["series"] and p["diff"])
    path = patch["mbox"].split("UPSTREAM", 1)[1]
    raw = await gateway.get(path.removesuffix("mbox/") + "raw/")
    assert raw.status == 200
    assert await raw.text() == patch["diff"]
    assert raw.headers["Content-Type"] == "text/x-patch"
    assert raw.headers["Content-Disposition"].endswith(".diff")

    series = patch["series"][0]
    whole = next(r for r in MBOXES if r["path"] == f"/series/{series['id']}/mbox/")["body"]
    alone = await (await gateway.get(path)).text()
    with_deps = await (await gateway.get(path + "?series=*")).text()
    assert with_deps.endswith(alone)
    assert whole.startswith(with_deps.removesuffix(alone)), "the patches before it, in order"
    same = await (await gateway.get(path + f"?series={series['id']}")).text()
    assert same == with_deps
    for wrong in ("999999", "abc"):
        refused = await gateway.get(path + f"?series={wrong}")
        assert refused.status == 404


@pytest.mark.parametrize(
    "path",
    [
        "/project/nosuch/patch/x@y/mbox/",
        "/project/patchwork/patch/not-a-msgid@nowhere/mbox/",
        "/project/patchwork/patch/not-a-msgid@nowhere/raw/",
        "/project/patchwork/cover/not-a-msgid@nowhere/mbox/",
        "/series/999999/mbox/",
        "/series/99999999999999999999999/mbox/",
    ],
)
async def test_unknown_downloads_are_404_pages(gateway, path):
    reply = await gateway.get(path)
    assert reply.status == 404
    assert reply.headers["Content-Type"].startswith("text/html")


async def test_downloads_revalidate_like_api_answers(gateway):
    path = MBOXES[0]["path"]
    first = await gateway.get(path)
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"].startswith("public")
    again = await gateway.get(path, headers={"If-None-Match": etag})
    assert again.status == 304
    packed = await gateway.get(path, headers={"Accept-Encoding": "gzip"})
    assert await packed.text() == MBOXES[0]["body"]


def _bundle_mboxes() -> dict[str, dict]:
    with lzma.open(CRAWL, "rt") as lines:
        records = [json.loads(line) for line in lines if '"crawl.mbox.bundle"' in line]
    return {r["path"]: r for r in records}


@pytest.fixture
async def bundles(deployment, tmp_path, aiohttp_client):
    """An in-process gateway on a copy of the mirror, upstream answering (the
    sync identity's token set, for what it reads back)."""
    mirror = copy_mirror(deployment.storage, tmp_path / "mirror.sqlite3")
    upstream = {"url": deployment.upstream, "token": tokens()["cibot"], "timeout": 5}
    config = parse({"upstream": upstream, "storage": {"path": str(mirror)}})
    reader = Reader(mirror)
    await reader.open()
    yield await aiohttp_client(create_app(config.gateway, reader))
    await reader.close()


async def test_bundle_mboxes_from_the_mirror_and_private_ones_only_for_their_owner(
    bundles, deployment
):
    """A public bundle's mbox is built from the mirror (upstream's bytes, in
    the order the sync read); one not known public is Patchwork's 404 to an
    anonymous caller, and upstream's own answer, fetched with the caller's
    credentials, to anyone else."""
    recorded = _bundle_mboxes()
    state = bundles.app[STATE]
    private = _private_bundle_paths(state.reader.path)
    assert private and len(recorded) - len(private) >= 3
    for path, record in recorded.items():
        reply = await bundles.get(path, allow_redirects=False)
        if path in private:  # (as Patchwork: an empty 404 for a bundle that exists)
            assert (reply.status, await reply.read()) == (404, b"")
            assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
            assert reply.headers["X-Patchwork-Gateway"] == "mirror"
            continue
        assert (reply.status, reply.headers["X-Patchwork-Gateway"]) == (200, "mirror")
        assert await reply.text() == record["body"]
        assert reply.headers["Content-Disposition"] == record["headers"]["Content-Disposition"]
    for path in private:  # forwarded with the owner's token, not redirected
        reply = await bundles.get(path, headers=auth_header("cibot"), allow_redirects=False)
        assert reply.status == 200, path
        assert reply.headers["X-Patchwork-Gateway"] == "upstream"
        assert await reply.text() == recorded[path]["body"]


async def test_a_download_whose_detail_the_mirror_lacks_is_fetched_kept_and_answered(
    bundles,
):
    """Read upstream into the mirror once, then built: the next one (and one
    with upstream gone) is the mirror's."""
    record = MBOXES[0]
    state = bundles.app[STATE]
    msgid_path = record["path"]
    with sqlite3.connect(state.reader.path) as db:
        patch_ids = [
            row[0]
            for row in db.execute("SELECT id, doc FROM patches")
            if json.loads(row[1])["mbox"].endswith(msgid_path)
        ]
        (patch_id,) = patch_ids
        db.execute("UPDATE patches SET detail = NULL, synced = 0 WHERE id = ?", (patch_id,))
    state.reader.check_changes()
    reply = await bundles.get(msgid_path, allow_redirects=False)
    assert (reply.status, reply.headers["X-Patchwork-Gateway"]) == (200, "mirror")
    assert await reply.text() == record["body"]
    with sqlite3.connect(state.reader.path) as db:
        (detail,) = db.execute("SELECT detail FROM patches WHERE id = ?", (patch_id,)).fetchone()
    assert detail is not None and "diff" in json.loads(detail)


def _private_bundle_paths(mirror) -> set[str]:
    with sqlite3.connect(mirror) as db:
        rows = db.execute(
            "SELECT u.username, b.name FROM bundles b JOIN users u ON u.id = b.owner_id "
            "WHERE b.public = 0"
        ).fetchall()
    return {f"/bundle/{owner}/{name}/mbox/" for owner, name in rows}


async def test_bundle_mboxes_built_offline_are_upstreams_bytes(gateway):
    """A gateway that never reached upstream (down since it started) builds
    every public bundle's mbox from the mirror, in the order the sync read:
    upstream's bytes, though the API lists those patches in another order."""
    built = 0
    for path, record in _bundle_mboxes().items():
        reply = await gateway.get(path, allow_redirects=False)
        if record["path"] in _private_bundle_paths(gateway.mirror):
            assert reply.status == 404  # (to anonymous callers)
            continue
        assert reply.status == 200, path
        assert reply.headers["X-Patchwork-Gateway"] == "mirror"
        assert await reply.text() == record["body"], path
        assert reply.headers["Content-Disposition"] == record["headers"]["Content-Disposition"]
        ids = [int(i) for i in re.findall(r"^X-Patchwork-Id: (\d+)$", record["body"], re.M)]
        assert ids != sorted(ids), "an order the API does not show"
        built += 1
    assert built >= 3
