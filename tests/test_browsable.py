"""The browsable API, from the mirror: pages a person can follow, offline."""

from __future__ import annotations

import html
import json
import re


async def test_a_list_page_shows_the_data_with_links_and_pages(gateway):
    reply = await gateway.get("/api/1.4/patches/?format=api&per_page=5&page=2")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    page = await reply.text()
    assert "<h1>Patch List</h1>" in page
    data = await (await gateway.get("/api/1.4/patches/?format=json&per_page=5&page=2")).json()
    for patch in data:
        assert html.escape(patch["name"]) in page
    links = re.findall(r'href="([^"]+)"', page)
    assert "src=" not in page and "<link" not in page, "no asset to fetch from anywhere"
    followed = [link for link in links if "/api/1.4/patches/" in link and "format=api" in link]
    assert followed, "the objects' URLs stay in pages"
    assert "Next &rsaquo;" in page and "&lsaquo; Previous" in page
    assert "<script" not in page
    assert reply.headers["Link"], "the pagination header, as for JSON"


async def test_a_browser_gets_pages_and_errors_are_pages_too(gateway):
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    reply = await gateway.get("/api/1.4/projects/1/", headers=browser)
    assert reply.status == 200
    page = await reply.text()
    assert "<h1>Project Detail</h1>" in page
    shown = re.search(r'<pre class="response">(.*)</pre>', page, re.S)
    assert shown is not None
    text = html.unescape(re.sub(r"<[^>]+>", "", shown.group(1)))
    assert json.loads(text)["link_name"] == "patchwork"
    missing = await gateway.get("/api/1.4/patches/999999/", headers=browser)
    assert missing.status == 404
    assert "No Patch matches the given query." in await missing.text()
    root = await gateway.get("/api/?format=api")
    assert "<h1>Api Root</h1>" in await root.text()
