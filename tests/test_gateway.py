"""The gateway's behaviour beyond the recorded cases: caching, upstream
faults, hostile input, redirects, HEAD, secrecy."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.config import parse
from gateway.reader import Reader
from mirror import schema, store
from mirror.store import Batch
from tests.support import (
    GatewayProcess,
    auth_header,
    free_port,
    request,
    run_cli,
    write_config,
)


def _copy(src: Path, dst: Path) -> Path:
    source, target = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return dst


@pytest.fixture
async def gateway(deployment, tmp_path, aiohttp_client):
    """An in-process gateway on a private copy of the mirror; upstream down."""
    mirror = _copy(deployment.storage, tmp_path / "mirror.sqlite3")
    dead = f"http://127.0.0.1:{free_port()}"
    config = parse(
        {
            "upstream": {"url": dead, "timeout": 5},
            "storage": {"path": str(mirror)},
            "server": {"refresh_interval": 0.05},
        }
    )
    reader = Reader(mirror)
    await reader.open(config.server.refresh_interval)
    client = await aiohttp_client(create_app(config, reader))
    client.mirror = mirror
    client.upstream = dead
    yield client
    await reader.close()


async def test_cached_answers_follow_the_mirror(gateway):
    url = "/api/1.4/projects/1/"
    first = await (await gateway.get(url)).json()
    assert first["name"] == "Patchwork"

    db = await schema.connect(gateway.mirror)
    batch = Batch()
    batch.add("projects", {"id": 1, "name": "Patchwork (renamed)"})
    await store.write(db, batch)
    await db.close()

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


async def test_downloads_redirect_to_the_same_path_upstream(gateway):
    path = "/project/patchwork/patch/1219282687.502373-patch1@ozlabs.org/mbox/?series=*"
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


def test_demo_mode_says_so(tmp_path):
    port = free_port()
    config = write_config(tmp_path / "c.toml", "", tmp_path / "m.sqlite3", port, level="info")
    with GatewayProcess(config, port) as gateway:
        reply = request("GET", gateway.url + "/api/1.4/projects/")
        assert reply.status == 200
        assert "demo" in reply.header("X-Patchwork-Gateway")
        assert len(json.loads(reply.body)) == 3
    assert "DEMO mirror" in gateway.stderr()


def test_tokens_are_never_logged(deployment, tmp_path):
    port = free_port()
    config = write_config(
        tmp_path / "c.toml", deployment.upstream, tmp_path / "m.sqlite3", port, level="debug"
    )
    _copy(deployment.storage, tmp_path / "m.sqlite3")
    with GatewayProcess(config, port) as gateway:
        for who in ("stephen", "basic:stephen", "badtoken"):
            request("GET", gateway.url + "/api/1.4/users/", auth_header(who))
    log = gateway.stderr()
    assert "GET /api/1.4/users/" in log
    for who in ("stephen", "basic:stephen", "badtoken"):
        secret = auth_header(who)["Authorization"].split(" ", 1)[1]
        assert secret not in log


def test_a_mirror_of_another_layout_is_refused(deployment, tmp_path):
    mirror = _copy(deployment.storage, tmp_path / "m.sqlite3")
    conn = sqlite3.connect(mirror)
    with conn:
        conn.execute("UPDATE meta SET value = 'other' WHERE key = 'schema.layout'")
    conn.close()
    config = write_config(tmp_path / "c.toml", deployment.upstream, mirror, free_port())
    result = run_cli("sync", "--config", str(config), "--once")
    assert result.returncode == 1
    assert "written by another build" in result.stderr
