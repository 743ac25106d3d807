"""Pages to read patches, from the mirror, with upstream down."""

from __future__ import annotations

import html
import json
import lzma

import pytest

from tests.support import CRAWL


def _details() -> dict[int, dict]:
    with lzma.open(CRAWL, "rt") as lines:
        return {
            r["body"]["id"]: r["body"]
            for r in (json.loads(line) for line in lines if '"crawl.detail.patches"' in line)
        }


PATCHES = _details()


def _path(url: str) -> str:
    return url.split("UPSTREAM", 1)[1]


async def test_a_patch_page_shows_everything_a_reviewer_reads(gateway):
    patch = PATCHES[7]
    reply = await gateway.get(_path(patch["web_url"]))
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    page = await reply.text()
    assert f"<h1>{html.escape(patch['name'])}</h1>" in page
    assert html.escape(patch["submitter"]["email"]) in page
    assert patch["state"] in page
    assert 'href="' + _path(patch["mbox"]) + '"' in page
    assert 'href="' + _path(patch["mbox"]).removesuffix("mbox/") + 'raw/"' in page
    assert '<span class="add">' in page and '<span class="del">' in page
    checks = await (await gateway.get("/api/1.4/patches/7/checks/")).json()
    assert checks, "patch 7 has checks"
    for check in checks:
        assert html.escape(check["context"]) in page
        assert f'class="check-{check["state"]}"' in page
    for sibling in patch["series"]:
        series = await (await gateway.get(f"/api/1.4/series/{sibling['id']}/")).json()
        for other in series["patches"]:
            assert html.escape(other["name"]) in page
    assert 'class="current"' in page
    comments = await (await gateway.get("/api/1.4/patches/7/comments/")).json()
    for comment in comments:
        assert f'id="{comment["id"]}"' in page
    assert "<script" not in page and "src=" not in page and "<link" not in page


async def test_a_cover_page_and_the_project_list(gateway):
    covers = await (await gateway.get("/api/1.4/covers/?per_page=1")).json()
    cover = covers[0]
    reply = await gateway.get(_path_of(cover["web_url"]))
    assert reply.status == 200
    assert html.escape(cover["name"]) in await reply.text()

    listed = await gateway.get("/project/patchwork/list/")
    assert listed.status == 200
    page = await listed.text()
    expected = await (
        await gateway.get(
            "/api/1.4/patches/?project=patchwork&archived=false&order=-date&per_page=50"
        )
    ).json()
    for patch in expected[:10]:
        assert html.escape(patch["name"]) in page
    narrowed = await (await gateway.get("/project/patchwork/list/?series=2")).text()
    series = await (await gateway.get("/api/1.4/series/2/")).json()
    for patch in series["patches"]:
        assert html.escape(patch["name"]) in narrowed
    searched = await (await gateway.get("/project/patchwork/list/?q=zzzznothing")).text()
    assert "<td>none</td>" in searched


def _path_of(url: str) -> str:
    return "/" + url.split("//", 1)[1].split("/", 1)[1]


@pytest.mark.parametrize(
    "path",
    [
        "/project/nosuch/list/",
        "/project/nosuch/patch/a@b/",
        "/project/patchwork/patch/not-there@nowhere/",
        "/project/patchwork/cover/not-there@nowhere/",
    ],
)
async def test_unknown_pages_are_404(gateway, path):
    assert (await gateway.get(path)).status == 404


async def test_the_landing_page_lists_the_projects_from_the_mirror(gateway):
    reply = await gateway.get("/")
    assert (reply.status, reply.headers["X-Patchwork-Gateway"]) == (200, "mirror")
    page = await reply.text()
    projects = await (await gateway.get("/api/1.4/projects/")).json()
    assert len(projects) == 3
    for project in projects:
        assert f'href="/project/{project["link_name"]}/list/"' in page
        assert html.escape(project["name"]) in page
    assert 'href="/api/"' in page and 'href="/api/docs/"' in page
    for project in projects:  # every link leads to a page of the mirror
        for link in (f"/project/{project['link_name']}/", f"/project/{project['link_name']}/list/"):
            assert (await gateway.get(link)).status == 200, link


async def test_a_bundle_page_for_anyone_when_public_for_its_owner_when_private(gateway):
    bundles = await (await gateway.get("/api/1.4/bundles/")).json()
    public = [b for b in bundles if b["public"] and b["patches"]]
    assert public
    bundle = public[0]
    reply = await gateway.get(_path_of(bundle["web_url"]))
    assert reply.status == 200
    page = await reply.text()
    for patch in bundle["patches"]:
        assert html.escape(patch["name"]) in page
    assert (await gateway.get("/bundle/nobody/no-such-bundle/")).status == 404
    # A private bundle's page only upstream may show, to its owner: upstream
    # is down here, so the caller is sent there.
    reply = await gateway.get(
        "/bundle/nobody/no-such-bundle/",
        headers={"Authorization": "Token x"},
        allow_redirects=False,
    )
    assert reply.status == 302
