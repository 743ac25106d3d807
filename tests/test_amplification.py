"""What callers can make upstream do: never more than they ask, and one
client never spends what every client shares."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from gateway.http.app import STATE
from gateway.upstream import identity, readback
from tests.support import (
    ThreadedServer,
    auth_header,
    replay_upstream,
    session_of,
    tokens,
)

FAULT = (
    b"<?xml version='1.0'?>\n<methodResponse>\n<fault>\n<value><struct>\n"
    b"<member><name>faultCode</name><value><int>1</int></value></member>\n"
    b"<member><name>faultString</name><value><string>No authentication credentials given"
    b"</string></value></member>\n</struct></value>\n</fault>\n</methodResponse>\n"
)
RESULT = (
    b"<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n"
    b"<value><boolean>1</boolean></value>\n</param>\n</params>\n</methodResponse>\n"
)
CHECK_CREATE = (
    b"<?xml version='1.0'?>\n<methodCall>\n<methodName>check_create</methodName>\n<params>\n"
    b"<param><value><int>1</int></value></param>\n"
    b"<param><value><string>ci/build</string></value></param>\n"
    b"<param><value><string>success</string></value></param>\n"
    b"</params>\n</methodCall>\n"
)

Answerer = Callable[[web.Request], Awaitable[web.Response]]


class Scripted:
    """An upstream answering with ``answer`` and keeping what it received."""

    def __init__(self, answer: Answerer) -> None:
        self.answer = answer
        self.received: list[web.Request] = []
        self.headers: list[dict[str, str]] = []
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.app = app

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append(request)
        self.headers.append(dict(request.headers))
        return await self.answer(request)

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.received]


@pytest.fixture
async def scripted(make_gateway):
    """``make(answer, **server)``: an in-process gateway on a copy of the
    mirror, with the sync's token, in front of a :class:`Scripted` upstream."""
    servers: list[ThreadedServer] = []

    async def make(answer: Answerer, **server: object):
        upstream = Scripted(answer)
        thread = ThreadedServer(upstream.app)
        servers.append(thread.__enter__())
        client = await make_gateway(thread.url, token=tokens()["cibot"], **server)
        client.upstream = upstream
        return client

    yield make
    for thread in servers:
        thread.__exit__(None, None, None)


async def _fault(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=FAULT, content_type="text/xml")


async def test_anonymous_xmlrpc_writes_cost_one_upstream_request_each(scripted):
    client = await scripted(_fault)
    for _ in range(20):
        reply = await client.post(
            "/xmlrpc/", data=CHECK_CREATE, headers={"Content-Type": "text/xml"}
        )
        assert reply.status == 200
        assert b"<fault>" in await reply.read()
    assert client.upstream.paths == ["/xmlrpc/"] * 20


async def test_xmlrpc_faults_with_credentials_are_not_read_back(scripted):
    client = await scripted(_fault)
    headers = {"Content-Type": "text/xml", **auth_header("stephen")}
    for _ in range(5):
        await (await client.post("/xmlrpc/", data=CHECK_CREATE, headers=headers)).read()
    assert client.upstream.paths == ["/xmlrpc/"] * 5


async def test_xmlrpc_results_are_read_back_a_bounded_number_at_once(scripted):
    """Eight writes at once while upstream holds the first read-back: those
    beyond the bound are answered at once, left to the sync."""
    released = threading.Event()

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        if request.path == "/xmlrpc/":
            return web.Response(body=RESULT, content_type="text/xml")
        # (In the upstream's own thread and loop: polled, not awaited.)
        while not released.is_set():  # a slow upstream: read-backs pile up
            await asyncio.sleep(0.01)
        return web.json_response([])

    client = await scripted(answer)
    headers = {"Content-Type": "text/xml", **auth_header("stephen")}

    async def write() -> int:
        reply = await client.post("/xmlrpc/", data=CHECK_CREATE, headers=headers)
        await reply.read()
        return reply.status

    # (As many as one client may have forwarded at once.)
    writes = [asyncio.create_task(write()) for _ in range(8)]
    try:
        async with asyncio.timeout(30):  # (a guard: each step comes at once)
            # Until every write is forwarded, a read-back is held upstream,
            # and the writes beyond the bound are answered.
            while (
                client.upstream.paths.count("/xmlrpc/") < len(writes)
                or client.upstream.paths.count("/xmlrpc/") == len(client.upstream.paths)
                or sum(t.done() for t in writes) < len(writes) - readback.MAX_PENDING
            ):
                await asyncio.sleep(0.01)
        assert sum(t.done() for t in writes) == len(writes) - readback.MAX_PENDING
    finally:
        released.set()
    assert set(await asyncio.gather(*writes)) == {200}
    event_reads = [p for p in client.upstream.paths if p.startswith("/api/") and "events" in p]
    # Each read-back starts with the events it names: no more than the bound.
    assert 1 <= len(event_reads) <= readback.MAX_PENDING


async def test_cookies_other_than_the_session_are_answered_from_the_mirror(scripted):
    client = await scripted(_fault)
    for cookie in ("csrftoken=abc", "theme=dark; csrftoken=x", "sessionid=", "nonsense"):
        reply = await client.get("/api/1.4/patches/?per_page=2", headers={"Cookie": cookie})
        assert reply.status == 200, cookie
        assert reply.headers["X-Patchwork-Gateway"] == "mirror"
        assert "public" in reply.headers["Cache-Control"]
    assert client.upstream.paths == []


@pytest.fixture
async def live(make_gateway):
    """An in-process gateway whose upstream is the replay (tokens, Basic and
    session cookies), behind a trusted proxy; ``client.seen[0]``: requests
    upstream received."""
    seen = [0]
    with replay_upstream(seen) as upstream:
        client = await make_gateway(upstream.url, trusted_proxies=["127.0.0.1"])
        client.seen = seen
        yield client


async def test_a_made_up_session_is_checked_once_then_anonymous(live):
    headers = {"Cookie": "csrftoken=x; sessionid=made-up"}
    for _ in range(3):
        reply = await live.get("/api/1.4/people/", headers=headers)
        assert reply.status == 403  # anonymous callers may not list people
        assert reply.headers["X-Patchwork-Gateway"] == "mirror"
        reply = await live.get("/api/1.4/patches/?per_page=1", headers=headers)
        assert (reply.status, reply.headers["X-Patchwork-Gateway"]) == (200, "mirror")
    assert live.seen[0] == 1


async def test_a_real_session_reads_from_the_mirror_after_one_check(live):
    headers = {"Cookie": f"sessionid={session_of('stephen')}"}
    for _ in range(3):
        reply = await live.get("/api/1.4/people/?per_page=2", headers=headers)
        assert (reply.status, reply.headers["X-Patchwork-Gateway"]) == (200, "mirror")
        assert reply.headers["Cache-Control"].startswith("private")
    assert live.seen[0] == 1


async def test_two_authorization_headers_are_one_credential_checked_once(live):
    token = tokens()["stephen"]
    headers = [("Authorization", f"Token {token}"), ("Authorization", f"Token {token}")]
    for _ in range(3):
        reply = await live.get("/api/1.4/projects/", headers=headers)
        assert reply.status == 403  # upstream joins them, and refuses the result
        assert reply.headers["X-Patchwork-Gateway"] == "upstream"
    assert live.seen[0] == 1


async def test_one_client_cannot_lock_new_credentials_of_others_out(live):
    flooder = {"X-Forwarded-For": "192.0.2.66"}
    statuses = []
    for i in range(200):
        headers = {"Authorization": f"Token made-up-{i:036d}", **flooder}
        reply = await live.get("/api/1.4/projects/", headers=headers)
        statuses.append(reply.status)
    assert statuses.count(503) >= 150  # this client's share is spent
    for name in ("stephen", "andrew", "contrib"):
        headers = {**auth_header(name), "X-Forwarded-For": "198.51.100.7"}
        reply = await live.get("/api/1.4/people/?per_page=1", headers=headers)
        assert reply.status == 200, name


async def test_a_revoked_token_stops_reading_people(scripted, monkeypatch):
    monkeypatch.setattr(identity, "RECHECK_SECONDS", 0.0)
    revoked = asyncio.Event()

    async def answer(request: web.Request) -> web.Response:
        if request.path_qs == identity.PROBE:
            if revoked.is_set():
                return web.json_response({"detail": "Invalid token."}, status=403)
            return web.json_response([])
        return web.json_response({"detail": "Not found."}, status=404)

    client = await scripted(answer)
    headers = auth_header("stephen")
    reply = await client.get("/api/1.4/people/?per_page=1", headers=headers)
    assert (reply.status, reply.headers["X-Patchwork-Gateway"]) == (200, "mirror")
    revoked.set()
    # Served at once, while the check runs again in the background...
    reply = await client.get("/api/1.4/people/?per_page=1", headers=headers)
    assert reply.status == 200
    for _ in range(100):
        if client.upstream.paths.count("/api/1.4/users/") >= 2 and not (
            client.app[STATE].upstream.identities._rechecks
        ):
            break
        await asyncio.sleep(0.02)
    # ... and then refused, as upstream refuses it.
    reply = await client.get("/api/1.4/people/?per_page=1", headers=headers)
    assert (reply.status, await reply.json()) == (403, {"detail": "Invalid token."})
    # Public data does not make the check again.
    checks = client.upstream.paths.count("/api/1.4/users/")
    await client.get("/api/1.4/projects/", headers=auth_header("andrew"))
    await client.get("/api/1.4/projects/", headers=auth_header("andrew"))
    assert client.upstream.paths.count("/api/1.4/users/") == checks + 1


async def test_one_client_holds_at_most_half_the_forwarding_slots(scripted):
    """Twelve requests of one client at once: upstream holds eight (half the
    slots) until released, the other four are refused at once, and another
    client is still answered meanwhile."""
    released = threading.Event()

    async def answer(request: web.Request) -> web.Response:
        # (In the upstream's own thread and loop: polled, not awaited.)
        while request.headers.get("X-Forwarded-For") == "192.0.2.66" and not released.is_set():
            await asyncio.sleep(0.01)
        return web.json_response({"name": "Patch List"})

    client = await scripted(answer, trusted_proxies=["127.0.0.1"])

    async def options(address: str) -> int:
        reply = await client.options("/api/1.4/patches/", headers={"X-Forwarded-For": address})
        await reply.read()
        return reply.status

    def held() -> int:
        return [h.get("X-Forwarded-For") for h in client.upstream.headers].count("192.0.2.66")

    flood = [asyncio.create_task(options("192.0.2.66")) for _ in range(12)]
    try:
        async with asyncio.timeout(30):  # (a guard: each step comes at once)
            # Until each request of the flood is held upstream or answered.
            while held() + sum(t.done() for t in flood) < len(flood):
                await asyncio.sleep(0.01)
            refused = [t.result() for t in flood if t.done()]
            other = await options("198.51.100.7")
        assert (held(), refused, other) == (8, [503] * 4, 200)
    finally:
        released.set()
    statuses = await asyncio.gather(*flood)
    assert statuses.count(200) == 8 and statuses.count(503) == 4


async def test_upstream_sees_the_client_as_the_gateway_sees_it(scripted):
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"name": "Patch List"})

    client = await scripted(answer)
    headers = {"X-Forwarded-For": "203.0.113.9, 10.1.1.1", "Connection": "keep-alive, X-Secret"}
    await (await client.options("/api/1.4/patches/", headers=headers)).read()
    (seen,) = client.upstream.headers
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert "X-Secret" not in seen
