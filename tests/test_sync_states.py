"""An upstream whose patch states are not Patchwork's defaults.

The API shows a patch's state only as a slug, but callers filter by the
state's id and sort by its ``ordering``: the mirror must learn both."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cli.config import parse
from gateway.http.app import create_app
from mirror import schema
from mirror.reader import Reader
from sync.crawler import Crawler
from sync.progress import Progress
from sync.recorded import Recording, RecordingSource
from sync.upstream import Response
from tests.support import CRAWL, free_port

ORIGIN = "http://upstream.test"

#: The upstream's states: slug -> (id, ordering).  Ids and order both differ
#: from the defaults (new=1 ... deferred=10, ordered by id).
STATES = {
    "deferred": (1, 0),
    "new": (2, 5),
    "accepted": (3, 1),
    "under-review": (5, 9),
    "rejected": (6, 2),
    "rfc": (7, 8),
    "not-applicable": (9, 3),
    "changes-requested": (11, 7),
    "awaiting-upstream": (12, 4),
    "superseded": (14, 6),
}
#: A state of upstream's that no patch is in.
EMPTY_STATE_ID = 8


class CustomStates(RecordingSource):
    """The recorded upstream, answering state filters with its own states."""

    def __init__(self, recording: Recording) -> None:
        super().__init__(recording)
        self.patches: list[dict[str, Any]] = []
        page = 1
        while True:
            resp = self.recording.lookup(f"/api/1.4/patches/?page={page}&per_page=250")
            if resp is None or resp.status != 200:
                break
            self.patches.extend(json.loads(resp.body))
            page += 1
        assert self.patches

    async def get(self, path: str) -> Response:
        parts = urlsplit(path)
        query = parse_qs(parts.query)
        if parts.path != "/api/1.4/patches/" or "state" not in query:
            return await super().get(path)
        by_id = {state_id: slug for slug, (state_id, _) in STATES.items()}
        by_id[EMPTY_STATE_ID] = "queued"
        wanted = {by_id.get(int(v)) for v in query["state"]}
        # Any value that is no state empties the list.
        found = [] if None in wanted else [p for p in self.patches if p["state"] in wanted]
        if query.get("order") == ["state"]:
            found.sort(key=lambda p: STATES[p["state"]][1])
        body = json.dumps(found[: int(query["per_page"][0])]).encode()
        return Response(200, {"Content-Type": "application/json"}, body)


async def test_state_ids_and_ordering_are_learnt_from_upstream(tmp_path, aiohttp_client):
    mirror = tmp_path / "m.sqlite3"
    db = await schema.connect(mirror)
    try:
        source = CustomStates(Recording.from_file(CRAWL, ORIGIN))
        await Crawler(db, source, ORIGIN, progress=Progress(bar=False)).run()
    finally:
        await db.close()

    config = parse(
        {
            "upstream": {"url": f"http://127.0.0.1:{free_port()}", "timeout": 5},
            "storage": {"path": str(mirror)},
        }
    )
    reader = Reader(mirror)
    await reader.open(config.server.refresh_interval)
    try:
        client = await aiohttp_client(create_app(config.gateway, reader))
        counts: dict[str, int] = {}
        for p in source.patches:
            counts[p["state"]] = counts.get(p["state"], 0) + 1

        for slug, (state_id, _) in STATES.items():
            resp = await client.get(f"/api/patches/?state={state_id}&per_page=250")
            got = await resp.json()
            assert {p["state"] for p in got} == {slug}
            assert len(got) == min(counts[slug], 250)

        # An id upstream does not have matches nothing, even beside a
        # valid one, as upstream answers; 10 is a default id it lacks.
        for absent in (4, 10):
            for query in (f"state={absent}", f"state=2&state={absent}"):
                resp = await client.get(f"/api/patches/?{query}")
                assert await resp.json() == [], query
        # A state no patch is in is still a state: beside another, it
        # leaves that one's patches.
        resp = await client.get(f"/api/patches/?state=2&state={EMPTY_STATE_ID}&per_page=250")
        assert len(await resp.json()) == min(counts["new"], 250)

        # order=state follows upstream's ordering, not the ids or the defaults.
        seen: list[str] = []
        for page in range(1, 5):
            resp = await client.get(f"/api/patches/?order=state&per_page=250&page={page}")
            for p in await resp.json():
                if not seen or seen[-1] != p["state"]:
                    seen.append(p["state"])
        assert seen == sorted(STATES, key=lambda slug: STATES[slug][1])
    finally:
        await reader.close()
