"""Hostile input: whatever arrives, the answer is Patchwork's or a clear 4xx,
never a 5xx of the gateway's own, a traceback, or unbounded memory."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import socket
import sqlite3
import string
import time
from urllib.parse import quote, urlencode, urlsplit

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.http import limits
from gateway.http.app import STATE
from gateway.http.cache import ResponseCache
from gateway.upstream.proxy import Proxy
from tests.test_gateway import ENDPOINTS, NASTY, PARAMS

#: Statuses upstream may answer a forwarded request with; the gateway passes
#: them on as they are (its own answers are checked apart).
FORWARDED = "upstream"

METHODS = st.sampled_from(
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "MOVE"]
)
PATHS = st.one_of(
    st.builds(
        lambda e, v: e.format(v=v),
        st.sampled_from(ENDPOINTS),
        st.sampled_from(["", "1.0/", "1.2/", "1.4/", "1x4/", "9.9/"]),
    ),
    st.builds(
        lambda parts: "/" + "/".join(quote(p, safe="") for p in parts),
        st.lists(st.text(min_size=1, max_size=40), max_size=6),
    ),
    st.sampled_from(["/", "/api", "/api/", "/xmlrpc/", "/patch/1/mbox/", "/_gateway/status"]),
)
VALUES = st.one_of(NASTY, st.text(min_size=200, max_size=1500), st.integers().map(str))
QUERIES = st.lists(st.tuples(st.sampled_from([*PARAMS, "format", "zz"]), VALUES), max_size=8)
AUTH = st.one_of(
    st.none(),
    st.just("Token " + "0" * 40),
    st.text(alphabet=string.ascii_letters + " !=", max_size=60),
    st.just("Basic !!!not-base64!!!"),
    st.builds(lambda s: "Basic " + base64.b64encode(s.encode()).decode(), st.text(max_size=40)),
)
HEADERS = st.dictionaries(
    st.sampled_from(["Accept", "Content-Type", "Cookie", "X-Forwarded-For", "If-None-Match"]),
    st.text(alphabet=string.printable.strip("\r\n\x0b\x0c"), max_size=300),
    max_size=3,
)
BODIES = st.one_of(
    st.none(),
    st.binary(max_size=2000),
    st.just(b'{"state": '),
    st.just(b"patches=1&patches=2&" * 50),
)


def _send(url: str, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.getheader("X-Patchwork-Gateway"), resp.read()
    finally:
        conn.close()


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    method=METHODS,
    path=PATHS,
    query=QUERIES,
    auth=st.lists(AUTH, max_size=2),
    headers=HEADERS,
    body=BODIES,
)
def test_hostile_requests_get_patchworks_answer_or_a_clear_4xx(
    deployment, method, path, query, auth, headers, body
):
    target = path + ("?" + urlencode(query) if query else "")
    sent = [(k, v) for k, v in headers.items()]
    sent += [("Authorization", a) for a in auth if a is not None]  # even twice
    try:
        status, source, reply = _send(deployment.gateway, method, target, sent, body)
    except http.client.InvalidURL:
        return  # the client refuses to send it
    assert status < 500 or source == FORWARDED, (method, target, status, reply[:300])
    assert b"Traceback" not in reply


def _raw(url: str, data: bytes) -> bytes:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "data",
    [
        b"G\x00T /api/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/ HTTP/1.1\r\nHost: x\r\nBad Header\xff: <script>\r\n\r\n",
        b"GET /api/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 a TLS hello",
        b"POST /api/1.4/bundles/ HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /api/1.4/bundles/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["nul-method", "bad-header", "long-line", "long-header", "tls", "neg-length", "chunks"],
)
def test_malformed_http_gets_a_short_400_without_echo_or_traceback(deployment, data):
    reply = _raw(deployment.gateway, data)
    status_line = reply.split(b"\r\n", 1)[0]
    assert (status_line.startswith(b"HTTP/1.") and b" 400 " in status_line) or reply == b"", reply
    assert b"<script>" not in reply and b"\\x" not in reply and b"aaaa" not in reply
    assert len(reply) < 1000
    time.sleep(0.2)
    assert "Traceback" not in deployment.log()


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/api/1.4/projects/?q=" + "x" * (limits.MAX_SEARCH + 1), 400),
        ("/api/1.4/projects/?q=" + ",".join("x" * (limits.MAX_SEARCH_TERMS + 1)), 400),
        ("/api/1.4/patches/?" + "&".join(f"state={i}" for i in range(100)), 400),
        ("/api/1.4/patches/?" + "&".join(f"p{i}=1" for i in range(100)), 400),
        ("/api/1.4/patches/?z=" + "y" * (limits.MAX_QUERY + 1), 414),
        ("/api/1.4/" + "p" * (limits.MAX_PATH + 1) + "/", 414),
    ],
)
def test_requests_beyond_the_bounds_get_a_clear_4xx(deployment, target, status):
    reply_status, _, body = _send(deployment.gateway, "GET", target, [], None)
    assert reply_status == status
    assert "detail" in json.loads(body)


def test_unknown_methods_are_refused_here_not_upstream(deployment):
    status, source, body = _send(deployment.gateway, "TRACE", "/api/1.4/patches/", [], None)
    assert (status, source) == (405, "mirror")
    assert json.loads(body) == {"detail": 'Method "TRACE" not allowed.'}


def test_a_long_host_header_is_refused(deployment):
    status, _, _ = _send(deployment.gateway, "GET", "/api/1.4/", [("Host", "h" * 300)], None)
    assert status == 400


async def test_caches_stay_within_their_byte_budgets_under_a_flood(gateway):
    """Distinct long URLs each answering ``[]``: the cache counts keys and
    headers, not only bodies, so it stays within its budget."""
    state = gateway.app[STATE]
    budget = 2 << 20
    state.cache = ResponseCache(budget)  # as configured with cache_bytes = 2 MiB
    filler = "z" * 1900
    for i in range(1500):
        resp = await gateway.get(f"/api/1.4/patches/?project=999999&n={i}&f={filler}")
        assert resp.status == 200
        await resp.read()
    assert budget * 0.9 <= state.cache.bytes <= budget  # full, and no fuller
    reader = state.reader
    for kept in (reader._counts, reader._lookups, reader._items):
        assert kept.bytes <= kept.max_bytes


async def test_long_searches_do_not_stall_other_readers(gateway, monkeypatch):
    """Searches at the bound (1,024 characters, 32 words, 9 searched
    columns) of 2,000 projects leave the event loop for the reader's pool:
    a trivial read is answered while all of them are still under way."""
    with sqlite3.connect(gateway.mirror) as conn:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1000 UNION ALL SELECT i + 1 FROM n WHERE i < 2999) "
            "INSERT INTO projects (id, name, linkname, listid, listemail, doc) "
            "SELECT i, 'p' || i, 'p' || i, 'p' || i || '.example.org', 'p' || i || '@example.org',"
            " json_object('id', i, 'name', 'p' || i, 'link_name', 'p' || i) FROM n"
        )
    conn.close()
    q = " ".join(["abcdefghijklmnopqrstuvwxyz01234"] * 32)
    url = "/api/1.4/projects/?" + urlencode({"q": q})
    reader = gateway.app[STATE].reader
    released = asyncio.Event()
    held: list[str] = []
    pooled = reader.fetch

    async def held_in_the_pool(sql: str, args=()) -> list:
        held.append(sql)
        await released.wait()
        return await pooled(sql, args)

    monkeypatch.setattr(reader, "fetch", held_in_the_pool)

    async def search(i: int) -> None:
        resp = await gateway.get(url + f"&n={i}")
        assert resp.status == 200
        await resp.read()

    searches = [asyncio.create_task(search(i)) for i in range(8)]
    try:
        async with asyncio.timeout(30):  # (a guard: the conditions hold at once)
            while len(held) < len(searches):  # each search has left the loop
                await asyncio.sleep(0.01)
            resp = await gateway.get("/api/1.4/projects/1/")
        assert resp.status == 200
        assert len(held) == len(searches)
        assert not any(task.done() for task in searches)
    finally:
        released.set()
    await asyncio.gather(*searches)


async def test_forwarding_has_slots_and_a_queue_then_a_503(gateway, aiohttp_server):
    """Requests with made-up credentials go upstream; beyond the slots and
    the queue the gateway answers at once, and never multiplies them."""
    seen = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal seen
        seen += 1
        await asyncio.sleep(0.5)
        return web.json_response({"detail": "Invalid token."}, status=401)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", slow)
    server = await aiohttp_server(app)
    state = gateway.app[STATE]
    state.upstream.proxy = Proxy(str(server.make_url("")), in_flight=2, waiting=3)
    headers = {"Authorization": "Token " + "f" * 40}

    async def write() -> tuple[int, str | None]:
        resp = await gateway.post("/api/1.4/bundles/", headers=headers, data=b"{}")
        await resp.read()
        return resp.status, resp.headers.get("Retry-After")

    answers = await asyncio.gather(*(write() for _ in range(10)))
    assert sorted(status for status, _ in answers) == [401] * 5 + [503] * 5
    assert all(after == "5" for status, after in answers if status == 503)
    assert seen == 5


async def test_a_broken_mirror_is_a_503_and_one_log_line(gateway, caplog):
    conn = sqlite3.connect(gateway.mirror)
    conn.execute("DROP TABLE covers")
    conn.commit()
    conn.close()
    resp = await gateway.get("/api/1.4/covers/?per_page=1")
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "5"
    assert await resp.json() == {
        "detail": "The mirror cannot answer right now; retry in a few seconds."
    }
    assert "Traceback" not in caplog.text
    assert any("the mirror cannot answer" in r.getMessage() for r in caplog.records)


async def test_a_failure_is_not_cached(gateway):
    conn = sqlite3.connect(gateway.mirror)
    conn.execute("ALTER TABLE covers RENAME TO covers_away")
    conn.commit()
    assert (await gateway.get("/api/1.4/covers/?per_page=2")).status == 503
    conn.execute("ALTER TABLE covers_away RENAME TO covers")
    conn.commit()
    conn.close()
    assert (await gateway.get("/api/1.4/covers/?per_page=2")).status == 200


async def test_only_the_default_hosts_are_answered(gateway):
    """No Host header can poison a cached answer: only known names are
    answered, and URLs are built from them."""
    for host, status in (
        ("evil.example", 400),
        ("127.0.0.1:8080", 200),
        ("localhost", 200),
        ("[::1]:80", 200),
    ):
        resp = await gateway.get("/api/1.4/projects/1/", headers={"Host": host})
        assert resp.status == status, host
        if status == 200:
            assert (await resp.json())["url"].startswith(f"http://{host}/")


async def test_remembered_hosts_and_accept_headers_stay_bounded(gateway):
    """Verdicts on Host and Accept are remembered for speed, but a client
    sending ever new or huge values cannot grow them."""
    state = gateway.app[STATE]
    for i in range(400):
        resp = await gateway.get("/api/1.4/projects/", headers={"Host": f"h{i}.example"})
        assert resp.status == 400
        long_accept = "application/json;q=0.9, " + f"text/x-{i};q=0.1, " * 400
        resp = await gateway.get("/api/1.4/projects/", headers={"Accept": long_accept})
        assert resp.status == 200
        resp = await gateway.get("/api/1.4/projects/", headers={"Accept": f"text/x-{i}, */*"})
        assert resp.status == 200
        encodings = {"Accept-Encoding": f"x-{i}, gzip;q=0.{i % 9 + 1}" + ", br" * (i % 3) * 100}
        resp = await gateway.get("/api/1.4/patches/", headers=encodings)
        assert resp.status == 200 and resp.headers.get("Content-Encoding") == "gzip"
    assert 0 < len(state.verdicts) <= 256
    assert all(sum(len(part or "") for part in sent[1:]) <= 600 for sent in state.verdicts)
