"""The change feed (``/_gateway/changes``): complete, in order, resumable,
private where the API is, held and streamed.

Randomized writes go through the store as the sync writes them; the
objects whose stored representation changed are found independently, by
comparing every table before and after each write, and the feed read from
several cursors must list exactly those, each once per change, in order.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import aiohttp
import orjson
import pytest

from cli.config import parse
from gateway.feed import changes as changes_module
from gateway.feed import endpoint as endpoint_module
from gateway.http.app import FEED as FEED_KEY
from gateway.http.app import STATE, create_app
from mirror import schema, store
from mirror.reader import Reader
from mirror.resources import RESOURCES
from mirror.store import Batch
from tests.support import auth_header, replay_upstream
from tests.writes import Writer, mirror_ids, stored_doc

FEED = "/_gateway/changes"


def _snapshot(path: Path) -> dict[tuple[str, int], tuple]:
    """Every object's stored form (and whether anonymous callers may read it)."""
    found = {}
    with sqlite3.connect(path) as db:
        for name, res in RESOURCES.items():
            public = res.public_column or "1"
            for obj_id, doc, detail, shown in db.execute(
                f"SELECT id, doc, detail, {public} FROM {res.table}"
            ):
                found[(name, obj_id)] = (doc, detail, bool(shown))
    return found


def _expected(before: dict, after: dict, authenticated: bool) -> set[tuple[str, int, str]]:
    """What one write changed, as a caller sees it."""
    seen = set()
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        name, obj_id = key
        if RESOURCES[name].requires_auth and not authenticated:
            continue
        if old is None:
            op = "created"
        elif new is None:
            op = "deleted"
        elif old[:2] == new[:2]:
            continue
        else:
            op = "changed"
        shown_before = old is not None and old[2]
        shown_now = new is not None and new[2]
        if op == "deleted" and not shown_before:
            continue
        if op != "deleted" and not shown_now:
            if not shown_before:
                continue
            op = "deleted"  # (a public bundle made private)
        seen.add((name, obj_id, op))
    return seen


def _bundle_write(path: Path, rng: random.Random) -> Batch:
    """A bundle made public or private, renamed, or deleted."""
    batch = Batch()
    with sqlite3.connect(path) as db:
        (raw,) = rng.choice(list(db.execute("SELECT doc FROM bundles")))
    doc = orjson.loads(raw)
    if rng.random() < 0.25:
        batch.deletions.append(("bundles", doc["id"]))
    elif rng.random() < 0.6:
        doc["public"] = not doc["public"]
    else:
        doc["name"] = f"renamed-{rng.randint(0, 10**6)}"
    batch.add("bundles", doc)
    return batch


async def _all(client, since: str, headers=None, limit: int = 100, **params) -> tuple[list, str]:
    """Every entry after ``since``, page by page; and the last cursor."""
    entries = []
    while True:
        query = {"since": since, "limit": str(limit), **params}
        reply = await client.get(FEED, params=query, headers=headers or {})
        assert reply.status == 200, await reply.text()
        body = await reply.json()
        assert list(body) == ["changes", "next", "more"]
        entries += body["changes"]
        since = body["next"]
        if not body["more"]:
            return entries, since


async def _now(client, headers=None) -> str:
    reply = await client.get(FEED, headers=headers or {})
    body = await reply.json()
    assert body["changes"] == [] and body["more"] is False
    return body["next"]


@pytest.fixture
async def live(make_gateway):
    """A gateway on a copy of the mirror, the replay upstream to check tokens."""
    with replay_upstream([0]) as upstream:
        client = await make_gateway(upstream.url)
        yield client


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_feed_lists_every_change_once_in_order_from_any_cursor(live, seed):
    rng = random.Random(seed)
    mirror = live.mirror
    writer = Writer(mirror, rng)
    reader = live.app[STATE].reader
    token = auth_header("stephen")
    cursors: list[tuple[str, str, int]] = []  # (anonymous, identified, batches before)
    expected: list[tuple[set, set]] = []
    db = await schema.connect(mirror)
    try:
        for step in range(30):
            if step % 6 == 0:
                cursors.append((await _now(live), await _now(live, token), len(expected)))
            before = _snapshot(mirror)
            batch = _bundle_write(mirror, rng) if rng.random() < 0.2 else writer.batch()[0]
            await store.write(db, batch)
            after = _snapshot(mirror)
            expected.append((_expected(before, after, False), _expected(before, after, True)))
    finally:
        await db.close()
    reader.check_changes()
    for anonymous, identified, done in cursors:
        for since, headers, which in ((anonymous, None, 0), (identified, token, 1)):
            entries, _ = await _all(live, since, headers, limit=rng.randint(1, 9))
            got = [(e["resource"], e["id"], e["op"]) for e in entries]
            assert [e["seq"] for e in entries] == sorted({e["seq"] for e in entries})
            # Batch by batch: exactly what it changed, each once.
            position = 0
            for wanted in expected[done:]:
                shown = wanted[which]
                assert set(got[position : position + len(shown)]) == shown
                assert len(set(got[position : position + len(shown)])) == len(shown)
                position += len(shown)
            assert position == len(got)
            if which == 0:
                assert not {r for r, _, _ in got} & {"people", "users"}


async def test_deletions_appear_with_their_project_and_no_object(live):
    mirror = live.mirror
    since = await _now(live)
    patch = mirror_ids(mirror, "patches", "WHERE project_id = 1")[0]
    db = await schema.connect(mirror)
    try:
        batch = Batch()
        batch.deletions.append(("patches", patch))
        await store.write(db, batch)
    finally:
        await db.close()
    live.app[STATE].reader.check_changes()
    entries, _ = await _all(live, since, expand="1")
    mine = [e for e in entries if e["resource"] == "patches" and e["id"] == patch]
    assert len(mine) == 1
    assert mine[0]["op"] == "deleted" and mine[0]["object"] is None
    assert mine[0]["project"] == "patchwork"
    assert (await live.get(f"/api/patches/{patch}/")).status == 404


async def test_expanded_entries_are_what_the_api_answers_at_their_url(live):
    mirror = live.mirror
    since = await _now(live)
    db = await schema.connect(mirror)
    try:
        batch, _ = Writer(mirror, random.Random(5)).batch()
        for patch in mirror_ids(mirror, "patches")[:3]:
            batch.add("patches", {"id": patch, "archived": True, "commit_ref": "abc123"})
        await store.write(db, batch)
    finally:
        await db.close()
    live.app[STATE].reader.check_changes()
    entries, _ = await _all(live, since, expand="1")
    assert len(entries) >= 3
    origin = f"http://{live.host}:{live.port}"
    for entry in entries:
        assert list(entry) == ["seq", "resource", "id", "op", "project", "date", "url", "object"]
        if entry["url"] is None:
            assert entry["resource"] == "events"
            continue
        assert entry["url"].startswith(origin + "/api/")
        reply = await live.get(entry["url"].removeprefix(origin))
        if entry["op"] == "deleted":
            assert reply.status == 404 and entry["object"] is None
        else:
            assert reply.status == 200
            assert await reply.json() == entry["object"]


async def test_a_cursor_the_log_no_longer_reaches_is_gone(live):
    mirror = live.mirror
    since = await _now(live)
    db = await schema.connect(mirror)
    try:
        for state in ("rejected", "accepted"):
            batch = Batch()
            batch.add("patches", {"id": mirror_ids(mirror, "patches")[0], "state": state})
            await store.write(db, batch)
        assert await store.trim_changes(db, rows=1) >= 1
    finally:
        await db.close()
    reply = await live.get(FEED, params={"since": since})
    assert reply.status == 410
    assert "read" in (await reply.json())["detail"]
    # From the oldest kept: the one change the log still has.
    entries, _ = await _all(live, "0")
    assert [(e["resource"], e["op"]) for e in entries] == [("patches", "changed")]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"since": "nonsense"}, 400),
        ({"since": "deadbeef-12"}, 410),  # another mirror's
        ({"since": "0", "limit": "0"}, 400),
        ({"since": "0", "limit": "x"}, 400),
        ({"since": "0", "resource": "nope"}, 400),
        ({"since": "0", "wait": "61"}, 400),
        ({"since": "0", "wait": "nan"}, 400),
        ({"since": "0", "expand": "yes"}, 400),
        ({"since": "0", "limit": "5000", "resource": "patches", "project": "patchwork"}, 200),
    ],
)
async def test_bad_requests_get_a_clear_4xx(live, params, status):
    reply = await live.get(FEED, params=params)
    assert reply.status == status, await reply.text()
    body = await reply.json()
    if status != 200:
        assert body["detail"]
    else:
        assert len(body["changes"]) == 1000
        assert {(e["resource"], e["project"]) for e in body["changes"]} == {
            ("patches", "patchwork")
        }


async def test_a_cursor_from_the_future_is_gone(live):
    now = await _now(live)
    epoch, _, seq = now.rpartition("-")
    reply = await live.get(FEED, params={"since": f"{epoch}-{int(seq) + 5}"})
    assert reply.status == 410


async def test_filters_by_resource_and_project(live):
    entries, _ = await _all(
        live, "0", limit=1000, resource=["checks", "patch_comments"], project="patchwork"
    )
    assert entries
    assert {e["resource"] for e in entries} == {"checks", "patch_comments"}
    assert {e["project"] for e in entries} == {"patchwork"}


async def test_anonymous_callers_never_see_people_users_or_private_bundles(live):
    private = set(mirror_ids(live.mirror, "bundles", "WHERE public = 0"))
    assert private
    for expand in ("0", "1"):
        entries, _ = await _all(live, "0", limit=1000, expand=expand)
        names = {e["resource"] for e in entries}
        assert "patches" in names and "bundles" in names
        assert not names & {"people", "users"}
        assert not {e["id"] for e in entries if e["resource"] == "bundles"} & private
    identified, _ = await _all(live, "0", auth_header("stephen"), limit=1000)
    assert {"people", "users"} <= {e["resource"] for e in identified}
    assert not {e["id"] for e in identified if e["resource"] == "bundles"} & private
    refused = await live.get(FEED, params={"since": "0"}, headers=auth_header("badtoken"))
    # (Upstream's refusal of the token, as the API gives it.)
    assert refused.status == 403
    assert await refused.json() == {"detail": "Invalid token."}


async def _write_soon(mirror: Path, delay: float) -> None:
    await asyncio.sleep(delay)
    db = await schema.connect(mirror)
    try:
        batch = Batch()
        batch.add("patches", {"id": mirror_ids(mirror, "patches")[1], "state": "superseded"})
        await store.write(db, batch)
    finally:
        await db.close()


async def test_a_held_request_answers_when_a_change_comes(live):
    since = await _now(live)
    empty = await live.get(FEED, params={"since": since, "wait": "0.2"})
    assert (await empty.json())["changes"] == []
    writing = asyncio.create_task(_write_soon(live.mirror, 0.3))
    reply = await live.get(FEED, params={"since": since, "wait": "30"})
    await writing
    body = await reply.json()
    assert [(e["resource"], e["op"]) for e in body["changes"]] == [("patches", "changed")]


async def _events(stream: aiohttp.ClientResponse, count: int) -> list[tuple[str, dict]]:
    """The next ``count`` events of a stream: (id, entry)."""
    found: list[tuple[str, dict]] = []
    event_id, data = None, None
    while len(found) < count:
        line = (await asyncio.wait_for(stream.content.readline(), 30)).decode().rstrip("\n")
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            data = orjson.loads(line[6:])
        elif line == "" and data is not None:
            found.append((event_id, data))
            event_id, data = None, None
    return found


STREAM = {"Accept": "text/event-stream"}


async def test_a_stream_resumes_from_its_last_event_across_a_restart(make_gateway, aiohttp_client):
    with replay_upstream([0]) as upstream:
        first = await make_gateway(upstream.url)
        mirror = first.mirror
        params = {"since": "0", "resource": "checks"}
        stream = await first.get(FEED, params=params, headers=STREAM)
        assert stream.headers["Content-Type"] == "text/event-stream"
        got = await _events(stream, 40)
        stream.close()
        everything, _ = await _all(first, "0", resource="checks", limit=1000)
        await first.close()  # (the gateway stops; a check comes meanwhile)
        db = await schema.connect(mirror)
        try:
            batch = Batch()
            batch.add("checks", _check_like(mirror, 990_001))
            await store.write(db, batch)
        finally:
            await db.close()
        config = parse({"upstream": {"url": upstream.url}, "storage": {"path": str(mirror)}})
        reader = Reader(mirror)
        await reader.open(0.05)
        try:
            second = await aiohttp_client(create_app(config.gateway, reader))
            headers = {**STREAM, "Last-Event-ID": got[-1][0]}
            again = await second.get(FEED, params=params, headers=headers)
            rest = await _events(again, len(everything) - 40 + 1)
            again.close()
        finally:
            await reader.close()
    seqs = [e["seq"] for e in everything]
    resumed = [e["seq"] for _, e in got + rest]
    assert resumed[: len(seqs)] == seqs
    assert [(e["resource"], e["id"], e["op"]) for _, e in rest[-1:]] == [
        ("checks", 990_001, "created")
    ]


def _check_like(mirror: Path, obj_id: int) -> dict:
    check = stored_doc(mirror, "checks", mirror_ids(mirror, "checks")[0])
    check["id"] = obj_id
    return check


async def test_streams_and_held_requests_are_bounded_per_client(make_gateway):
    client = await make_gateway("", feed_waiting_per_client=2)
    streams = [await client.get(FEED, headers=STREAM) for _ in range(2)]
    refused = await client.get(FEED, headers=STREAM)
    assert refused.status == 503 and refused.headers["Retry-After"]
    since = await _now(client)
    held = await client.get(FEED, params={"since": since, "wait": "5"})
    assert held.status == 503
    at_once = await client.get(FEED, params={"since": since})
    assert at_once.status == 200, "an answer that does not wait takes no place"
    for stream in streams:
        stream.close()


async def test_hundreds_of_idle_streams_all_get_a_change_and_the_api_still_answers(
    make_gateway,
):
    client = await make_gateway("", feed_waiting_per_client=500)
    url = client.make_url(FEED)
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        streams = [await session.get(url, headers=STREAM) for _ in range(250)]
        assert {s.status for s in streams} == {200}
        assert (await client.get("/api/patches/?per_page=5")).status == 200
        await _write_soon(client.mirror, 0)
        got = await asyncio.gather(*(_events(s, 1) for s in streams))
        assert {(e["resource"], e["op"]) for [(_, e)] in got} == {("patches", "changed")}
        assert len({event_id for [(event_id, _)] in got}) == 1
        for stream in streams:
            stream.close()


async def test_an_answer_with_objects_stops_at_its_byte_bound(live, monkeypatch):
    monkeypatch.setattr(changes_module, "EXPAND_BYTES", 20_000)
    reply = await live.get(FEED, params={"since": "0", "expand": "1", "limit": "1000"})
    body = await reply.json()
    assert 1 <= len(body["changes"]) < 1000 and body["more"] is True
    assert len(orjson.dumps(body["changes"])) < 20_000 + 300_000  # (the last one may pass it)
    following = await live.get(FEED, params={"since": body["next"], "expand": "1"})
    assert (await following.json())["changes"][0]["seq"] > body["changes"][-1]["seq"]


async def test_a_stream_whose_client_does_not_read_is_dropped(make_gateway, monkeypatch):
    monkeypatch.setattr(endpoint_module, "WRITE_SECONDS", 1.0)
    client = await make_gateway("")
    feed = client.app[FEED_KEY]
    _, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        f"GET {FEED}?since=0&expand=1 HTTP/1.1\r\nHost: {client.host}:{client.port}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    for _ in range(300):  # (it never reads: the kernel's buffers fill, then the stream's)
        if feed.waiting == 0 and feed.dropped:
            break
        await asyncio.sleep(0.1)
    assert feed.waiting == 0 and feed.dropped == 1
    # What it held meanwhile: at most one batch beyond what aiohttp waits at.
    assert endpoint_module.STREAM_BATCH_BYTES + (64 << 10) <= endpoint_module.STREAM_BUFFER
    writer.close()


async def test_an_idle_stream_gets_a_comment_to_keep_it_open(make_gateway, monkeypatch):
    monkeypatch.setattr(endpoint_module, "KEEPALIVE", 0.2)
    client = await make_gateway("")
    stream = await client.get(FEED, headers=STREAM)
    lines = [await asyncio.wait_for(stream.content.readline(), 10) for _ in range(2)]
    assert lines == [b": keep-alive\n", b"\n"]
    stream.close()
