"""What HTTP clients and the caches between see: ETag and 304,
Cache-Control and Vary per identity, gzip, several server processes."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import time
from pathlib import Path

import pytest

from gateway.http.delivery import accepts_gzip
from tests.support import (
    GatewayProcess,
    auth_header,
    copy_mirror,
    free_port,
    request,
    write_config,
)
from tests.test_gateway import _settled, _write

PAGE = "/api/1.4/patches/?per_page=30"


async def test_a_page_has_a_strong_etag_and_304_repeats_what_caches_need(gateway):
    first = await gateway.get(PAGE)
    body = await first.read()
    etag = first.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"'), "a strong validator"
    again = await gateway.get(PAGE)
    assert again.headers["ETag"] == etag and await again.read() == body

    for condition in (etag, f'"nope", W/{etag}', "*"):
        for method in ("GET", "HEAD"):
            reply = await gateway.request(method, PAGE, headers={"If-None-Match": condition})
            assert reply.status == 304, (method, condition)
            assert await reply.read() == b""
            assert reply.headers["ETag"] == etag
            assert reply.headers["Cache-Control"] == first.headers["Cache-Control"]
            assert reply.headers["Vary"] == first.headers["Vary"]

    other = await gateway.get(PAGE, headers={"If-None-Match": '"something-else"'})
    assert other.status == 200 and await other.read() == body


async def test_the_etag_changes_with_the_answer(gateway):
    url = "/api/1.4/projects/1/"
    before = await gateway.get(url)
    etag = before.headers["ETag"]
    await _write(gateway.mirror, "projects", {"id": 1, "name": "Patchwork (renamed)"})
    await _settled(gateway, url, lambda data: data["name"] == "Patchwork (renamed)")
    after = await gateway.get(url, headers={"If-None-Match": etag})
    assert after.status == 200
    assert after.headers["ETag"] != etag
    assert (await after.json())["name"] == "Patchwork (renamed)"
    # Other pages and versions have validators of their own.
    assert (await gateway.get("/api/1.0/projects/1/")).headers["ETag"] != after.headers["ETag"]


async def test_anonymous_answers_may_be_shared_briefly(gateway):
    reply = await gateway.get(PAGE)
    assert reply.headers["Cache-Control"] == "public, max-age=5"
    vary = [v.strip() for v in reply.headers["Vary"].split(",")]
    assert {"Accept", "Authorization", "Cookie", "Accept-Encoding"} <= set(vary)
    missing = await gateway.get("/api/1.4/patches/999999/")
    assert missing.status == 404
    assert "ETag" not in missing.headers
    assert missing.headers["Cache-Control"] == "public, max-age=5"
    # People need credentials: the refusal is the same for every anonymous
    # caller, and Vary keeps it from callers with credentials.
    refused = await gateway.get("/api/1.4/people/")
    assert refused.status == 403
    assert "Authorization" in refused.headers["Vary"]


def test_answers_to_callers_with_credentials_are_private(deployment):
    for url in (PAGE, "/api/1.4/people/", "/api/1.4/users/"):
        reply = request("GET", deployment.gateway + url, auth_header("stephen"))
        assert reply.status == 200, url
        assert reply.header("Cache-Control") == "private, no-cache", url
        assert "Authorization" in reply.header("Vary"), url
        etag = reply.header("ETag")
        again = request(
            "GET", deployment.gateway + url, {**auth_header("stephen"), "If-None-Match": etag}
        )
        assert again.status == 304
        assert again.header("Cache-Control") == "private, no-cache"
    # The same page, anonymously, is public again (not the private copy).
    assert request("GET", deployment.gateway + PAGE).header("Cache-Control").startswith("public")


def test_forwarded_answers_that_may_be_gzipped_vary_on_accept_encoding(deployment):
    # Bundles with credentials are forwarded upstream (the caller's private
    # ones may be missing here); a shared cache must not hand the gzipped
    # bytes to a client that cannot read them.
    headers = {**auth_header("stephen"), "Accept-Encoding": "gzip"}
    reply = request("GET", deployment.gateway + "/api/1.4/bundles/", headers)
    assert reply.status == 200
    assert reply.header("X-Patchwork-Gateway") == "upstream"
    assert reply.header("Content-Encoding") == "gzip"
    vary = {v.strip() for v in reply.header("Vary").split(",")}
    assert {"Authorization", "Accept-Encoding"} <= vary


async def test_gzip_when_asked_compressed_once_with_its_own_etag(gateway):
    plain = await gateway.get(PAGE, headers={"Accept-Encoding": "identity"})
    body = await plain.read()
    assert "Content-Encoding" not in plain.headers
    packed = await gateway.get(
        PAGE, headers={"Accept-Encoding": "gzip, deflate"}, auto_decompress=False
    )
    raw = await packed.read()
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(raw) == body
    assert len(raw) < len(body) / 4
    assert packed.headers["ETag"] not in (plain.headers["ETag"], None)
    assert packed.headers["Vary"] == plain.headers["Vary"]
    again = await gateway.get(PAGE, headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert await again.read() == raw
    not_modified = await gateway.get(
        PAGE, headers={"Accept-Encoding": "gzip", "If-None-Match": packed.headers["ETag"]}
    )
    assert not_modified.status == 304
    assert not_modified.headers["ETag"] == packed.headers["ETag"]
    # Small answers are not worth compressing.
    small = await gateway.get("/api/", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small.headers


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("GZIP", True),
        ("deflate, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip; q=0.0, identity", False),
        ("*", True),
        ("*;q=0", False),
        ("br, *;q=0.1", True),
        ("gzip;q=0, *", False),
        ("x-gzip", True),
        ("gzip;q=abc", False),
    ],
)
def test_accept_encoding_is_read_with_its_weights(header, expected):
    assert accepts_gzip(header) is expected


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _written(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar")


def _listening(port: int) -> int:
    """Sockets listening on ``port`` (one per server process)."""
    suffix = f":{port:04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[1].endswith(suffix) and line.split()[3] == "0A")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_several_server_processes_share_the_port_and_follow_the_mirror(deployment, tmp_path):
    port = free_port()
    mirror = copy_mirror(deployment.storage, tmp_path / "m.sqlite3")
    config = write_config(tmp_path / "c.toml", "", mirror, port, server="workers = 2")
    config.write_text(config.read_text().replace('url = ""', 'url = "http://127.0.0.1:9"'))
    # (Its metrics folder in the test's: the server is killed at the end.)
    metrics_folder = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    with GatewayProcess(config, port, env=metrics_folder) as gateway:
        assert gateway.proc is not None
        deadline = time.monotonic() + 30
        while _listening(port) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        (extra,) = _children(gateway.proc.pid)
        pids = (gateway.proc.pid, extra)
        before = {pid: _written(pid) for pid in pids}
        etags = set()
        for _ in range(300):  # a connection each: the kernel spreads them
            reply = request("GET", gateway.url + PAGE)
            assert reply.status == 200
            etags.add(reply.header("ETag"))
        assert len(etags) == 1, "every process validates alike"
        for pid in pids:
            assert _written(pid) - before[pid] > 50 * 30_000, f"process {pid} served"

        # Each process sees the sync's writes: soon, fifty answers in a row
        # (from either process, as the kernel spreads them) say so.
        asyncio.run(_write(mirror, "projects", {"id": 1, "name": "Renamed"}))
        names: list[str] = []
        deadline = time.monotonic() + 30
        while names[-50:] != ["Renamed"] * 50 and time.monotonic() < deadline:
            reply = request("GET", gateway.url + "/api/1.4/projects/1/")
            names.append(json.loads(reply.body)["name"])
        assert names[-50:] == ["Renamed"] * 50

        # Killed outright, the first process leaves no server behind.
        os.kill(gateway.proc.pid, signal.SIGKILL)
        gateway.proc.wait()
        deadline = time.monotonic() + 10
        while _alive(extra) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(extra)
