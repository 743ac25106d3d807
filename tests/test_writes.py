"""Writes through the gateway: forwarded as sent, answered as upstream
answers, and read back at once.

The recorded writes (``fixtures/writes.jsonl.xz``: about sixty writes by
different identities, allowed, forbidden, invalid and conflicting, each
followed by reads of what changed) are replayed through a gateway whose
upstream is the stateful fake Patchwork (which answers them as the real
one did, see ``tests/test_fake_writes.py``).  Each write must reach the
fake exactly as sent, its answer must be the recorded one, and the reads
after it, answered by the gateway (from its mirror, for the most part),
must be the recorded ones too: the gateway read back what the write
changed before answering it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from cli.config import parse
from gateway.http.app import STATE, create_app
from mirror.reader import Reader
from sync.recorded import PLACEHOLDER, read_records
from tests.fake import FakePatchwork
from tests.mirroring import worker
from tests.support import FIXTURES, ThreadedServer, auth_header, recorded_404, tokens
from tests.test_fake_writes import COMPARED_HEADERS, WRITES, excuse_new_dates, hidden_bundles


@pytest.fixture
async def through(tmp_path, aiohttp_client):
    """(the fake upstream, a gateway in front of it with a synced mirror)."""
    fake = FakePatchwork.from_records(read_records(FIXTURES / "crawl.jsonl.xz"))
    users = {fake.render("users", i)["username"]: i for i in fake.ids("users")}
    fake.tokens = {token: users[name] for name, token in tokens().items()}
    fake.not_found_page = recorded_404()
    for bundle in hidden_bundles(fake):
        fake.add_recorded("bundles", bundle)
    mirror = tmp_path / "mirror.sqlite3"
    with ThreadedServer(fake.app()) as upstream:
        async with worker(mirror, upstream.url, tokens()["cibot"]) as sync:
            await sync.once()
        config = parse(
            {
                "upstream": {"url": upstream.url, "token": tokens()["cibot"]},
                "storage": {"path": str(mirror)},
            }
        )
        reader = Reader(mirror)
        await reader.open(3600)  # no polling: only read-back may make it fresh
        client = await aiohttp_client(create_app(config.gateway, reader))
        yield fake, client
        await reader.close()


async def _send(client, record: dict[str, Any]):
    headers = auth_header(record["auth"])
    if record.get("request_content_type"):
        headers["Content-Type"] = record["request_content_type"]
    body = record.get("request_body")
    resp = await client.request(
        record["method"],
        record["path"],
        headers=headers,
        data=body.encode() if isinstance(body, str) else body,
        allow_redirects=False,
    )
    return resp, await resp.read()


async def test_recorded_writes_go_through_and_are_read_back_at_once(through):
    fake, client = through
    origin = str(client.make_url("")).rstrip("/")
    crawl_end = fake.now
    from_mirror = 0
    for index, record in enumerate(read_records(WRITES)):
        where = (index, record["family"], record["method"], record["path"], record["auth"])
        before = len(fake.writes_received())
        resp, raw = await _send(client, record)
        if record["method"] != "GET":
            # Forwarded as sent: method, path, body bytes, type, credentials.
            sent = fake.writes_received()[before:]
            assert len(sent) == 1, where
            assert (sent[0].method, sent[0].path) == (record["method"], record["path"])
            body = record.get("request_body")
            assert sent[0].body == (body.encode() if isinstance(body, str) else b"")
            assert sent[0].content_type == record.get("request_content_type"), where
            assert sent[0].authorization == auth_header(record["auth"]).get("Authorization")
        else:
            from_mirror += resp.headers.get("X-Patchwork-Gateway") == "mirror"
        assert resp.status == record["status"], (where, raw[:300])
        for name in COMPARED_HEADERS:
            want = record["headers"].get(name)
            want = want.replace(PLACEHOLDER, origin) if want is not None else None
            assert resp.headers.get(name) == want, (where, name)
        if isinstance(record["body"], str):
            assert raw.decode() == record["body"].replace(PLACEHOLDER, origin), where
            continue
        expected = json.loads(json.dumps(record["body"]).replace(PLACEHOLDER, origin))
        assert excuse_new_dates(json.loads(raw), crawl_end) == excuse_new_dates(
            expected, crawl_end
        ), where
    # The reads after the writes came from the mirror, but for bundles and a
    # user's own detail, which only upstream knows for that caller.
    assert from_mirror > 120


async def test_a_write_upstream_refuses_changes_nothing_here(through):
    _, client = through
    before = (await (await client.get("/api/1.4/patches/28/")).json())["state"]
    resp = await client.patch(
        "/api/1.4/patches/28/",
        json={"state": "bogus"},
        headers=auth_header("stephen"),
    )
    assert resp.status == 400
    assert (await (await client.get("/api/1.4/patches/28/")).json())["state"] == before


async def test_upstream_unreachable_a_write_gets_a_clear_502(through, tmp_path):
    fake, client = through
    state = client.app[STATE]
    fake.down = True
    resp = await client.patch(
        "/api/1.4/patches/28/", json={"state": "rejected"}, headers=auth_header("stephen")
    )
    assert resp.status == 503  # the fake's own outage answer, passed on
    fake.down = False
    await state.upstream.proxy.close()
    state.upstream.proxy.base = "http://127.0.0.1:9"  # nothing listens there
    resp = await client.patch(
        "/api/1.4/patches/28/", json={"state": "rejected"}, headers=auth_header("stephen")
    )
    assert resp.status == 502
    assert await resp.json() == {"detail": "Upstream Patchwork is unreachable."}
    assert (await (await client.get("/api/1.4/patches/28/")).json())["state"] != "rejected"


async def test_endpoints_the_mirror_does_not_hold_are_forwarded(through):
    """A newer Patchwork's endpoints (a project's webhooks) reach upstream
    with credentials; anonymous reads of them get the mirror's 404."""
    fake, client = through
    fake.reset_requests()
    resp = await client.post(
        "/api/1.4/projects/1/webhooks/", json={"url": "https://ci/"}, headers=auth_header("cibot")
    )
    assert resp.headers["X-Patchwork-Gateway"] == "upstream"
    assert [r.path for r in fake.writes_received()] == ["/api/1.4/projects/1/webhooks/"]
    resp = await client.get("/api/1.4/projects/1/webhooks/")
    assert (resp.status, resp.headers["X-Patchwork-Gateway"]) == (404, "mirror")


async def test_credentials_revoked_upstream_are_checked_again(through):
    fake, client = through
    header = auth_header("stephen")
    assert (await client.get("/api/1.4/patches/1/", headers=header)).status == 200
    del fake.tokens[header["Authorization"].split()[1]]  # revoked upstream
    # The next request that reaches upstream learns it...
    assert (await client.get("/api/1.4/bundles/", headers=header)).status == 403
    # ... and the mirror no longer answers those credentials either.
    resp = await client.get("/api/1.4/patches/1/", headers=header)
    assert (resp.status, await resp.json()) == (403, {"detail": "Invalid token."})
