"""Test support for continuous sync: a fake upstream served over HTTP, a
sync worker on a mirror file, and the check that matters: the mirror,
rendered by the gateway's own code, equals the upstream object by object.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from gateway.api.render import Context, Embeds, embedded_refs, renderer
from gateway.responses import json_body
from mirror import schema
from mirror.control import Control
from mirror.reader import Reader
from mirror.resources import RESOURCES
from mirror.versions import LATEST
from sync.progress import Progress
from sync.recorded import read_records
from sync.upstream import Upstream
from sync.worker import Settings, Worker
from tests.fake import FakePatchwork
from tests.support import CRAWL, ThreadedServer, free_port

#: The fake's resource names -> the mirror's.
NAMES = {"patch-comments": "patch_comments", "cover-comments": "cover_comments"}
TOKEN = "0123456789abcdef0123456789abcdef01234567"


@cache
def _crawl_records() -> tuple[dict[str, Any], ...]:
    return tuple(read_records(CRAWL))


def fake_upstream() -> FakePatchwork:
    """A fresh fake Patchwork holding the recorded instance."""
    return FakePatchwork.from_records(_crawl_records())


@contextlib.contextmanager
def serve(fake: FakePatchwork) -> Iterator[str]:
    """Serve ``fake`` on 127.0.0.1; yields its origin."""
    port = free_port()
    with ThreadedServer(fake.app(), port) as server:
        yield server.url


@contextlib.asynccontextmanager
async def worker(
    path: Path, url: str, token: str = TOKEN, **settings: Any
) -> AsyncIterator[Worker]:
    """A sync worker on the mirror at ``path``, reading ``url`` as the crawl identity."""
    db = await schema.connect(path)
    control = Control(path)
    client: dict[str, Any] = {"attempts": 2, "max_backoff": 0.05}
    client.update({k: settings.pop(k) for k in ("attempts", "timeout") if k in settings})
    upstream = Upstream(url, token, **client)
    defaults: dict[str, Any] = {"poll_interval": 0.2, "budget": 6000.0}
    sync = Worker(
        db, upstream, url, control, Settings(**{**defaults, **settings}), progress=Progress(False)
    )
    try:
        yield sync
    finally:
        await upstream.close()
        await db.close()
        control.close()


async def mirror_snapshot(path: Path, origin: str) -> dict[str, dict[int, Any]]:
    """Every mirrored object as the gateway renders its detail (events: list items)."""
    reader = Reader(path)
    await reader.open(3600)
    try:
        ctx = Context(origin, LATEST, LATEST)
        out: dict[str, dict[int, Any]] = {}
        for name, res in RESOURCES.items():
            render = renderer(name, LATEST, name != "events")
            objects: dict[int, Any] = {}
            for (obj_id,) in reader._lookup(f"SELECT id FROM {res.table} ORDER BY id"):
                doc = reader.full(res.table, obj_id)
                assert doc is not None
                embeds = Embeds(reader.docs(embedded_refs(name, doc)))
                objects[obj_id] = orjson.loads(json_body(render(doc, embeds, ctx)))
            out[name] = objects
        return out
    finally:
        await reader.close()


def upstream_snapshot(fake: FakePatchwork, origin: str, viewer: Any = True) -> dict[str, Any]:
    """The fake's objects by mirror resource name.

    Without a user's ``settings``: upstream shows them to that user alone,
    and what the gateway answers each identity is another matter.
    """
    snapshot = {NAMES.get(k, k): v for k, v in fake.snapshot(origin, viewer=viewer).items()}
    for user in snapshot["users"].values():
        user.pop("settings", None)
    return snapshot


async def assert_mirror_equals(path: Path, fake: FakePatchwork, viewer: Any = True) -> None:
    """The whole mirror equals the upstream, object by object."""
    origin = "http://gateway.test"
    mirror = await mirror_snapshot(path, origin)
    upstream = upstream_snapshot(fake, origin, viewer)
    problems = []
    for name in RESOURCES:
        have, want = mirror[name], upstream.get(name, {})
        if set(have) != set(want):
            problems.append(
                f"{name}: missing {sorted(set(want) - set(have))[:10]}, "
                f"extra {sorted(set(have) - set(want))[:10]}"
            )
        for obj_id in sorted(set(have) & set(want)):
            if have[obj_id] != want[obj_id]:
                keys = [k for k in want[obj_id] if have[obj_id].get(k) != want[obj_id][k]]
                problems.append(f"{name} {obj_id} differs in {keys}")
    assert not problems, "\n".join(problems[:20])


async def until_mirror_equals(
    path: Path, fake: FakePatchwork, seconds: float = 10.0, viewer: Any = True
) -> None:
    """Wait, up to ``seconds``, for the mirror to equal upstream object by
    object (it must in the end, or this fails saying how it differs)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        try:
            await assert_mirror_equals(path, fake, viewer)
            return
        except AssertionError:
            await asyncio.sleep(0.1)
    await assert_mirror_equals(path, fake, viewer)


class Writes:
    """Whether anyone committed to the mirror since this was made.

    SQLite's ``data_version`` changes for a connection when another one
    commits: exactly what makes the server drop its caches.
    """

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path)
        self._start = self._version()

    def _version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def seen(self) -> bool:
        return self._version() != self._start

    def close(self) -> None:
        self._conn.close()
