"""``GET /_gateway/snapshot``: the mirror for a replica to start from.

A snapshot (mirror.snapshot) is built at most once at a time, across the
server's processes (a file lock), and kept for ``[server]
snapshot_max_age`` seconds; requests meanwhile get the kept one, with
``Range`` support (aiohttp's file responses), so that an interrupted
download resumes.  ``X-Gateway-Cursor`` says where in this gateway's
change feed it stands; the replica follows the feed from there.

Callers presenting ``[server] replication_token`` (``Authorization:
Bearer ...``) get the whole mirror; everyone else a copy of what
anonymous callers may read (``X-Gateway-Snapshot`` says which).  A build
that takes longer than a request should wait gets a 503 with
``Retry-After``; it goes on, and the retry finds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path

from aiohttp import web

from gateway.feed.changes import replica
from mirror import snapshot
from mirror.snapshot import SnapshotError

log = logging.getLogger(__name__)

#: Seconds a request waits for a snapshot being built before a 503.
WAIT_SECONDS = 20.0
SUFFIX = ".sqlite3.gz"


class Snapshots:
    def __init__(self, mirror: Path, max_age: float, token: str) -> None:
        self.mirror = mirror
        self.folder = mirror.with_name(mirror.name + ".snapshots")
        self.max_age = max_age
        self.token = token
        self._building: dict[str, asyncio.Task[Path]] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        kind = "full" if replica(request, self.token) else "public"
        found = self._kept(kind)
        if found is None:
            task = self._building.get(kind)
            if task is None or task.done():
                task = self._building[kind] = asyncio.create_task(
                    asyncio.to_thread(self._build, kind)
                )
            try:
                found = await asyncio.wait_for(asyncio.shield(task), WAIT_SECONDS)
            except TimeoutError:
                return _busy("A snapshot is being made; retry shortly.", 30)
            except SnapshotError as exc:
                log.warning("could not make a snapshot: %s", exc)
                return _busy("No snapshot can be made right now.", 60)
        cursor = found.name.removeprefix(kind + "-").removesuffix(SUFFIX)
        return web.FileResponse(
            found,
            headers={
                "Content-Type": "application/gzip",
                "Cache-Control": "no-store",
                "X-Gateway-Cursor": cursor,
                "X-Gateway-Snapshot": kind,
            },
        )

    def _kept(self, kind: str) -> Path | None:
        """The newest snapshot of ``kind`` still fresh enough."""
        newest: tuple[float, Path] | None = None
        with contextlib.suppress(OSError):
            for path in self.folder.glob(f"{kind}-*{SUFFIX}"):
                made = path.stat().st_mtime
                if time.time() - made <= self.max_age and (newest is None or made > newest[0]):
                    newest = (made, path)
        return newest[1] if newest else None

    def _build(self, kind: str) -> Path:
        """One at a time across processes; the older ones go once it is there."""
        self.folder.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            found = self._kept(kind)  # (another process may just have made one)
            if found is not None:
                return found
            building = self.folder / f"{kind}.building{SUFFIX}"
            started = time.monotonic()
            cursor = snapshot.make(self.mirror, building, public=kind == "public")
            made = self.folder / f"{kind}-{cursor}{SUFFIX}"
            os.replace(building, made)
            for old in self.folder.glob(f"{kind}-*{SUFFIX}"):
                if old != made:
                    with contextlib.suppress(OSError):
                        old.unlink()
            log.info(
                "%s snapshot at %s made in %.1f s (%d bytes)",
                kind,
                cursor,
                time.monotonic() - started,
                made.stat().st_size,
            )
            return made
        finally:
            os.close(fd)


def _busy(detail: str, seconds: int) -> web.Response:
    return web.json_response(
        {"detail": detail},
        status=503,
        headers={"Retry-After": str(seconds), "Cache-Control": "no-store"},
    )
