"""The sync worker under an upstream that changes: deletions, privacy,
events arriving mid-crawl, and a writer that fails."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mirror import schema, store
from mirror.store import Batch
from sync.crawler import Crawler, Writer
from sync.progress import Progress
from sync.recorded import Recording, RecordingSource
from sync.upstream import Response
from tests.support import CRAWL

ORIGIN = "http://upstream.test"


def _count(path, sql: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


class Hiding(RecordingSource):
    """The recorded upstream, minus some objects (deleted, or made private)."""

    def __init__(self, recording: Recording, hidden: dict[str, set[int]]) -> None:
        super().__init__(recording)
        self.hidden = hidden

    async def get(self, path: str) -> Response:
        parts = [p for p in urlsplit(path).path.split("/") if p]
        if (
            len(parts) >= 4
            and parts[3].isdigit()
            and int(parts[3]) in self.hidden.get(parts[2], ())
        ):
            return Response(404, {"Content-Type": "application/json"}, b'{"detail":"Not found."}')
        resp = await super().get(path)
        if len(parts) == 3 and parts[2] in self.hidden and resp.status == 200:
            items = [i for i in json.loads(resp.body) if i["id"] not in self.hidden[parts[2]]]
            resp = Response(resp.status, resp.headers, json.dumps(items).encode())
        return resp


async def _sync(path, source) -> Any:
    db = await schema.connect(path)
    try:
        return await Crawler(db, source, ORIGIN, progress=Progress(bar=False)).run()
    finally:
        await db.close()


async def test_deleted_and_privatised_objects_leave_the_mirror(tmp_path):
    recording = Recording.from_file(CRAWL, ORIGIN)
    mirror = tmp_path / "m.sqlite3"
    await _sync(mirror, RecordingSource(recording))
    assert _count(mirror, "SELECT count(*) FROM bundles WHERE id = 1 AND public = 1") == 1
    assert _count(mirror, "SELECT count(*) FROM checks WHERE patch_id = 7") > 0
    assert _count(mirror, "SELECT count(*) FROM events WHERE patch_id = 7") > 0

    # Upstream deletes patch 7 and bundle 1 goes private (404 to the sync).
    report = await _sync(mirror, Hiding(recording, {"patches": {7}, "bundles": {1}}))

    assert report.deleted == 2
    assert _count(mirror, "SELECT count(*) FROM bundles WHERE id = 1") == 0
    assert _count(mirror, "SELECT count(*) FROM patches WHERE id = 7") == 0
    # What upstream deletes with a patch goes too.
    assert _count(mirror, "SELECT count(*) FROM checks WHERE patch_id = 7") == 0
    assert _count(mirror, "SELECT count(*) FROM patch_comments WHERE patch_id = 7") == 0
    assert _count(mirror, "SELECT count(*) FROM events WHERE patch_id = 7") == 0
    assert _count(mirror, "SELECT count(*) FROM patches") == 766


class GrowingEvents:
    """An upstream whose only data is events, newest first, that gains new
    events while the sync reads them: older ones shift to later pages."""

    def __init__(self, count: int, arrive_after_page: int, arriving: int, slow_page: int) -> None:
        self.events = list(range(count, 0, -1))
        self.arrive_after_page = arrive_after_page
        self.arriving = arriving
        self.slow_page = slow_page
        self.next_id = count + 1

    def _event(self, event_id: int) -> dict[str, Any]:
        project = {
            "id": 1,
            "url": f"{ORIGIN}/api/1.4/projects/1/",
            "name": "P",
            "link_name": "p",
            "list_id": "p.example.org",
            "list_email": "p@example.org",
            "web_url": "",
            "scm_url": "",
            "webscm_url": "",
            "list_archive_url": "",
            "list_archive_url_format": "",
            "commit_url_format": "",
        }
        date = f"2026-01-01T00:00:{event_id % 60:02d}.{event_id:06d}"
        return {
            "id": event_id,
            "category": "series-created",
            "project": project,
            "date": date,
            "actor": None,
            "payload": {"series": None},
        }

    async def get(self, path: str) -> Response:
        parts = urlsplit(path)
        json_type = {"Content-Type": "application/json"}
        if parts.path == "/api/1.4/":
            return Response(200, json_type, b'{"patches": "x"}')
        if parts.path != "/api/1.4/events/":
            if parts.path.count("/") == 4:  # every other list: empty
                page_one = f"<{ORIGIN}{parts.path}?page=1>"
                link = f'{page_one}; rel="first", {page_one}; rel="last"'
                return Response(200, {**json_type, "Link": link}, b"[]")
            return Response(404, json_type, b"{}")
        query = parse_qs(parts.query)
        page, size = int(query["page"][0]), int(query["per_page"][0])
        if page == self.slow_page:
            await asyncio.sleep(0.3)  # answered after the pages fetched beside it
        items = self.events[(page - 1) * size : page * size]
        last = -(-len(self.events) // size)
        link = f'<{ORIGIN}/api/1.4/events/?page={last}>; rel="last"'
        if page < last:
            link = f'<{ORIGIN}/api/1.4/events/?page={page + 1}>; rel="next", {link}'
        body = json.dumps([self._event(i) for i in items]).encode()
        if page == self.arrive_after_page:
            for _ in range(self.arriving):
                self.events.insert(0, self.next_id)
                self.next_id += 1
        return Response(200, {**json_type, "Link": link}, body)

    async def close(self) -> None:
        pass


async def test_events_arriving_mid_crawl_hide_no_older_event(tmp_path):
    # Page 2 is slow; new events arrive once page 3 is served.  Fetched side
    # by side, page 2 would be read after the shift and page 3 before it,
    # and the events moving from page 2 to page 3 would be missed.
    upstream = GrowingEvents(count=1000, arrive_after_page=3, arriving=30, slow_page=2)
    mirror = tmp_path / "m.sqlite3"
    await _sync(mirror, upstream)
    # Every event that existed when the crawl began is mirrored.
    assert _count(mirror, "SELECT count(*) FROM events WHERE id <= 1000") == 1000


async def test_a_failing_writer_stops_the_crawl_instead_of_hanging(tmp_path, monkeypatch):
    db = await schema.connect(tmp_path / "m.sqlite3")

    async def broken(db, batch):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "write", broken)
    writer = Writer(db)
    writer.start()
    try:
        with pytest.raises(sqlite3.OperationalError):
            async with asyncio.timeout(5):
                for _ in range(100):  # more than the queue holds
                    await writer.put(Batch())
    finally:
        await db.close()
