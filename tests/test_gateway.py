"""The gateway's behaviour beyond the recorded cases: caching, upstream
faults, hostile input, redirects, HEAD, secrecy."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import string
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from cli.config import parse
from gateway.http.app import create_app
from mirror import schema, store
from mirror.reader import Reader
from mirror.store import Batch
from tests.support import (
    GatewayProcess,
    ThreadedServer,
    auth_header,
    copy_mirror,
    free_port,
    request,
    run_cli,
    write_config,
)


async def test_cached_answers_follow_the_mirror(gateway):
    url = "/api/1.4/projects/1/"
    first = await (await gateway.get(url)).json()
    assert first["name"] == "Patchwork"

    await _write(gateway.mirror, "projects", {"id": 1, "name": "Patchwork (renamed)"})

    for _ in range(100):
        data = await (await gateway.get(url)).json()
        if data["name"] != "Patchwork":
            break
        await asyncio.sleep(0.02)
    assert data["name"] == "Patchwork (renamed)"
    # Embedded copies follow too: the project inside a patch.
    patch = await (await gateway.get("/api/1.4/patches/1/")).json()
    assert patch["project"]["name"] == "Patchwork (renamed)"


async def test_upstream_down_public_reads_still_answer(gateway):
    resp = await gateway.get("/api/1.4/patches/1/", headers=auth_header("stephen"))
    assert resp.status == 200
    assert (await resp.json())["id"] == 1


async def test_upstream_down_identity_reads_and_writes_get_a_clear_502(gateway):
    for method, path in (
        ("GET", "/api/1.4/people/"),
        ("PATCH", "/api/1.4/patches/1/"),
        ("POST", "/api/1.4/patches/1/checks/"),
    ):
        resp = await gateway.request(method, path, headers=auth_header("stephen"), data=b"{}")
        assert resp.status == 502
        assert await resp.json() == {"detail": "Upstream Patchwork is unreachable."}


async def test_anonymous_people_are_refused_like_upstream(gateway):
    resp = await gateway.get("/api/people/")
    assert resp.status == 403
    assert await resp.json() == {"detail": "Authentication credentials were not provided."}


async def test_bad_host_header_is_a_400(gateway):
    resp = await gateway.get("/api/1.4/", headers={"Host": "evil host/<script>"})
    assert resp.status == 400


async def test_head_has_the_headers_and_no_body(gateway):
    get = await gateway.get("/api/1.4/patches/?per_page=3")
    head = await gateway.head("/api/1.4/patches/?per_page=3")
    assert head.status == 200
    assert await head.read() == b""
    for name in ("Content-Type", "Link", "Allow"):
        assert head.headers[name] == get.headers[name]


async def test_what_the_mirror_cannot_build_redirects_to_the_same_path_upstream(gateway):
    for path in ("/user/todo/?x=1", "/user/bundles/"):
        resp = await gateway.get(path, allow_redirects=False)
        assert resp.status == 302
        assert resp.headers["Location"] == gateway.upstream + path


async def test_legacy_ids_redirect_from_the_mirror(gateway):
    resp = await gateway.get("/patch/1/raw/", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == (
        "/project/patchwork/patch/1219282687.502373-patch1@ozlabs.org/raw/"
    )
    resp = await gateway.get("/comment/7/", allow_redirects=False)
    assert resp.headers["Location"].endswith("/patch/1219283399.826701-patch1@ozlabs.org/#7")


ENDPOINTS = [
    "/api/{v}patches/",
    "/api/{v}patches/1/",
    "/api/{v}covers/",
    "/api/{v}series/",
    "/api/{v}events/",
    "/api/{v}bundles/",
    "/api/{v}projects/",
    "/api/{v}projects/patchwork/",
    "/api/{v}patches/409/checks/",
    "/api/{v}patches/409/checks/43/",
    "/api/{v}patches/2/comments/",
    "/api/{v}covers/116/comments/41/",
]
PARAMS = [
    "project",
    "series",
    "submitter",
    "delegate",
    "state",
    "archived",
    "hash",
    "msgid",
    "since",
    "before",
    "q",
    "order",
    "page",
    "per_page",
    "user",
    "context",
    "category",
    "patch",
    "cover",
    "actor",
    "owner",
    "public",
]
NASTY = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=string.digits + "-+_.e ", max_size=40),
    st.sampled_from(
        [
            "",
            "last",
            "-1",
            "0",
            "99999999999999999999999",
            "1e3",
            "٣",
            "%00",
            "\x00",
            "'; DROP TABLE patches; --",
            "2024-13-45T99:99",
            "2024-01-01T00:00Z",
            "-id,,name",
            '"quoted term"',
            "%",
            "_",
            "\\",
        ]
    ),
)


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    version=st.sampled_from(["", "1.0/", "1.1/", "1.2/", "1.3/", "1.4/"]),
    query=st.lists(st.tuples(st.sampled_from(PARAMS), NASTY), max_size=4),
)
def test_hostile_queries_never_fail(deployment, endpoint, version, query):
    from urllib.parse import urlencode

    url = deployment.gateway + endpoint.format(v=version) + "?" + urlencode(query)
    reply = request("GET", url)
    assert reply.status < 500, (url, reply.body[:300])
    if reply.header("Content-Type") == "application/json":
        json.loads(reply.body)


@pytest.mark.parametrize(
    "path",
    [
        "/api/patches/99999999999999999999/checks/",
        "/api/covers/99999999999999999999/comments/1/",
        "/patch/99999999999999999999/mbox/",
        "/comment/99999999999999999999/",
        "/api/1.4/patches/?since=9999-12-31T23:59-01:00",
        "/api/1.4/patches/?before=0001-01-01T00:00%2B01:00",
        "/api/1.4/patches/?per_page=1&q=" + "+".join(["a"] * 1200),
        "/api/1.4/projects/?per_page=1&q=" + "+".join(["x"] * 700),
        "/api/1.4/patches/?per_page=1&order=" + ",".join(["-id"] * 1300),
        "/api/1.4/patches/%ff/",
        "/api/../../etc/passwd",
        "/api/1.4/projects/%00/",
        "/" + "a/" * 2000,
        "/api/1.4/patches/?" + "q=x&" * 2000,
        "/api/1.4/patches/99999999999999999999999/",
    ],
)
def test_hostile_paths_never_fail(deployment, path):
    reply = request("GET", deployment.gateway + path)
    assert reply.status < 500, reply.body[:300]


@pytest.mark.slow
def test_demo_mode_says_so(tmp_path):
    port = free_port()
    config = write_config(tmp_path / "c.toml", "", tmp_path / "m.sqlite3", port, level="info")
    with GatewayProcess(config, port) as gateway:
        reply = request("GET", gateway.url + "/api/1.4/projects/")
        assert reply.status == 200
        assert "demo" in reply.header("X-Patchwork-Gateway")
        assert len(json.loads(reply.body)) == 3
    assert "DEMO mirror" in gateway.stderr()


@pytest.mark.slow
def test_demo_mode_builds_every_page_and_download_its_answers_link_to(tmp_path):
    """With no upstream, every URL the demo's answers give (web pages,
    mboxes, the landing page's links) is built from the mirror."""
    port = free_port()
    config = write_config(tmp_path / "c.toml", "", tmp_path / "m.sqlite3", port)
    with GatewayProcess(config, port) as gateway:
        urls = {gateway.url + "/"}
        for resource in ("projects", "patches", "covers", "series", "bundles"):
            reply = request("GET", f"{gateway.url}/api/1.4/{resource}/?per_page=250")
            for obj in json.loads(reply.body)[:40]:
                urls.update(obj[key] for key in ("web_url", "mbox") if obj.get(key))
        landing = request("GET", gateway.url + "/").body.decode()
        urls.update(gateway.url + path for path in re.findall(r'href="(/[^"]*)"', landing))
        assert len(urls) > 100
        for url in sorted(urls):
            if not url.startswith(gateway.url):
                continue  # (a project's own website)
            reply = request("GET", url)
            assert reply.status == 200, (url, reply.status, reply.body[:200])


@pytest.mark.slow
def test_tokens_are_never_logged(deployment, tmp_path):
    port = free_port()
    config = write_config(
        tmp_path / "c.toml",
        deployment.upstream,
        tmp_path / "m.sqlite3",
        port,
        server="access_log = true",
        level="debug",
    )
    copy_mirror(deployment.storage, tmp_path / "m.sqlite3")
    with GatewayProcess(config, port) as gateway:
        for who in ("stephen", "basic:stephen", "badtoken"):
            request("GET", gateway.url + "/api/1.4/users/", auth_header(who))
    log = gateway.stderr()
    assert "GET /api/1.4/users/" in log
    for who in ("stephen", "basic:stephen", "badtoken"):
        secret = auth_header(who)["Authorization"].split(" ", 1)[1]
        assert secret not in log


def test_a_mirror_of_another_layout_is_refused(deployment, tmp_path):
    mirror = copy_mirror(deployment.storage, tmp_path / "m.sqlite3")
    conn = sqlite3.connect(mirror)
    with conn:
        conn.execute("UPDATE meta SET value = 'other' WHERE key = 'schema.layout'")
    conn.close()
    config = write_config(tmp_path / "c.toml", deployment.upstream, mirror, free_port())
    result = run_cli("sync", "--config", str(config), "--once")
    assert result.returncode == 1
    assert "written by another build" in result.stderr


async def _write(mirror: Path, resource: str, *docs: dict) -> None:
    db = await schema.connect(mirror)
    try:
        batch = Batch()
        for doc in docs:
            batch.add(resource, doc)
        await store.write(db, batch)
    finally:
        await db.close()


async def _settled(client, url: str, check) -> object:
    """Poll ``url`` until ``check`` holds on its JSON (the mirror changed)."""
    data = None
    for _ in range(100):
        data = await (await client.get(url)).json()
        if check(data):
            return data
        await asyncio.sleep(0.02)
    return data


async def test_series_dependencies_follow_patchworks_shared_serializer(gateway):
    # aiohttp (project 2, series 199-277) shows dependencies; patchwork
    # (project 1, series 1-198) does not.
    await _write(gateway.mirror, "projects", {"id": 2, "show_dependencies": True})
    await _write(gateway.mirror, "series", {"id": 277, "dependencies": [276]})
    newest = await _settled(
        gateway, "/api/1.4/series/?order=-id&per_page=250", lambda d: "dependencies" in d[0]
    )
    assert newest[0]["dependencies"] == [str(gateway.make_url("/api/1.4/series/276/"))]
    assert all("dependents" in s for s in newest[:79])  # every aiohttp series...
    assert not any("dependents" in s for s in newest[79:])  # ...then none at all
    # Oldest first, a patchwork series comes first: no item shows them.
    oldest = await (await gateway.get("/api/1.4/series/?order=id&per_page=250")).json()
    assert not any("dependencies" in s for s in oldest)
    # A detail shows them whenever its own project has the flag.
    one = await (await gateway.get("/api/1.0/series/277/")).json()
    assert "dependencies" not in one  # added in 1.4
    one = await (await gateway.get("/api/1.4/series/277/")).json()
    assert one["dependents"] == []


async def test_the_404_page_is_learnt_once_the_sync_knows_it(gateway):
    db = await schema.connect(gateway.mirror)
    await store.set_meta(db, "upstream.404", '["<p>gone: ", "</p>"]')
    await db.close()
    for _ in range(100):
        resp = await gateway.get("/no/such/page/")
        if (await resp.text()).startswith("<p>gone"):
            break
        await asyncio.sleep(0.02)
    assert await resp.text() == "<p>gone: /no/such/page/</p>"
    assert resp.status == 404


async def test_null_characters_in_q_are_refused_on_lists_and_details(gateway):
    for url in ("/api/1.4/patches/?q=a%00", "/api/1.4/patches/1/?q=a%00", "/api/events/?q=%00"):
        resp = await gateway.get(url)
        assert resp.status == 400, url
        assert await resp.json() == ["Null characters are not allowed."]
    # Only the last value counts.
    assert (await gateway.get("/api/1.4/patches/?q=%00&q=fix")).status == 200


async def test_a_query_running_too_long_is_stopped_with_a_503(gateway, monkeypatch):
    from mirror import reader as reader_module

    async def too_long(*args, **kwargs):
        raise reader_module.QueryTooSlow("SELECT count(*) FROM patches")

    # (tests/unit/mirror/test_reader_limits.py: how a query is stopped.)
    monkeypatch.setattr(reader_module, "INLINE_BUDGET", 100)
    monkeypatch.setattr(reader_module.Reader, "fetch", too_long)
    resp = await gateway.get("/api/1.4/patches/?q=zz&order=-name&per_page=5")
    assert resp.status == 503
    assert "too long" in (await resp.json())["detail"]


async def test_only_allowed_hosts_are_answered(deployment, tmp_path, aiohttp_client):
    mirror = copy_mirror(deployment.storage, tmp_path / "m.sqlite3")
    config = parse({"storage": {"path": str(mirror)}, "server": {"allowed_hosts": ["pw.example"]}})
    reader = Reader(mirror)
    await reader.open()
    try:
        client = await aiohttp_client(create_app(config.gateway, reader))
        refused = await client.get("/api/1.4/", headers={"Host": "evil.example"})
        assert refused.status == 400
        ok = await client.get("/api/1.4/", headers={"Host": "PW.example:8080"})
        assert (await ok.json())["patches"] == "http://PW.example:8080/api/1.4/patches/"
    finally:
        await reader.close()


async def test_the_gateways_own_endpoints(gateway):
    """Without a webhook secret the webhook endpoint does not exist; the
    status answers, and every answer says when the mirror last synced."""
    resp = await gateway.post("/_gateway/webhook", data=b"{}")
    assert resp.status == 404
    resp = await gateway.get("/_gateway/status")
    assert resp.status == 200
    status = await resp.json()
    assert status["counts"]["patches"] == 767
    assert status["initial_sync"] == "complete"
    synced = (await gateway.get("/api/1.4/")).headers["X-Patchwork-Gateway-Synced"]
    assert synced == status["sync"]["last_success"]


@pytest.fixture
async def echoed(deployment, tmp_path, aiohttp_client):
    """An in-process gateway whose upstream answers 200 to anything and
    keeps the raw path of each request it received (``client.seen``)."""
    seen: list[str] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.json_response({"detail": "ok"})

    upstream_app = web.Application()
    upstream_app.router.add_route("*", "/{tail:.*}", echo)
    with ThreadedServer(upstream_app) as upstream:
        mirror = copy_mirror(deployment.storage, tmp_path / "m.sqlite3")
        config = parse({"upstream": {"url": upstream.url}, "storage": {"path": str(mirror)}})
        reader = Reader(mirror)
        await reader.open()
        try:
            client = await aiohttp_client(create_app(config.gateway, reader))
            client.seen = seen
            yield client
        finally:
            await reader.close()


async def test_forwarded_requests_reach_upstream_as_the_client_encoded_them(echoed):
    path = "/api/1.4/patches/1/?msgid=a%40b&q=x+y%2Fz"
    reply = await echoed.patch(URL(path, encoded=True), data=b"state=new")
    assert reply.status == 200
    assert echoed.seen[0] == path  # (then the write is read back)


async def test_dot_segments_are_never_forwarded(echoed):
    for path in ("/api/../admin/", "/api/%2e%2e/admin/", "/api/1.4/./patches/x/"):
        for method in ("GET", "POST"):
            status = await _raw_status(echoed.port, method, path)
            assert status == 404, (method, path)
    reply = await echoed.get("/api/1.4/newer-endpoint/", headers={"Authorization": "T"})
    assert reply.status == 200  # (forwarded: a newer Patchwork's endpoint)
    assert echoed.seen == ["/api/1.4/newer-endpoint/"]


async def _raw_status(port: int, method: str, target: str) -> int:
    """The status of a request sent with ``target`` exactly as written (HTTP
    clients normalise dot segments away)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Authorization: Token t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
    )
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])
