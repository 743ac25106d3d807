"""How fresh the mirror is: the ``X-Patchwork-Gateway-Synced`` header and
``/_gateway/status``.

The sync worker records its progress in the control file (see
``mirror.control``); the server reads it at most once a second, so the
header costs nothing per request, and serves it with the mirror's counts
as JSON for people and monitoring.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from mirror.control import Control, sync_running
from mirror.reader import Reader
from mirror.resources import RESOURCES

SYNCED_HEADER = "X-Patchwork-Gateway-Synced"
#: Seconds a read of the control file, or of the counts, is reused.
STATUS_TTL = 1.0
COUNTS_TTL = 5.0
#: The count of what anonymous callers may list of a resource with private
#: objects (bundles): the public ones.
PUBLIC = ".public"


def visible_counts(counts: dict[str, int], details: bool) -> dict[str, int]:
    """The counts a caller may see: every one with ``details``; else only
    of what anonymous callers may list (no people or users, which upstream
    refuses them; public bundles only)."""
    shown = {}
    for name, count in counts.items():
        if name.endswith(PUBLIC):
            continue
        res = RESOURCES[name]
        if details:
            shown[name] = count
        elif res.public_column:
            shown[name] = counts.get(name + PUBLIC, 0)
        elif not res.requires_auth:
            shown[name] = count
    return shown


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def mirror_bytes(path: Path) -> int:
    """The mirror's files on disk: the database, its WAL and shared memory."""
    size = 0
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        with contextlib.suppress(OSError):
            size += (path.parent / name).stat().st_size
    return size


class SyncStatus:
    """The sync worker's last words, read from the control file."""

    def __init__(self, control: Control | None, reader: Reader) -> None:
        self.control = control
        self.reader = reader
        self._read_at = -1e9
        self._read_generation = -1
        self._status: dict[str, Any] = {}
        self._counts_at = -1e9
        self._counts: dict[str, int] = {}
        self._counted = -1
        self._last_success: datetime | None = None
        self._header: str | None = None
        self._headers: tuple[tuple[str, str], ...] = ()
        self._counting: asyncio.Lock = asyncio.Lock()
        self._recount: asyncio.Task[None] | None = None

    def current(self) -> dict[str, Any]:
        """The worker's status, re-read at most once a second."""
        self.headers()
        return self._status

    def _reread(self) -> None:
        self._read_at, self._read_generation = time.monotonic(), self.reader.generation
        # A locked or damaged control file: keep what was read last.
        with contextlib.suppress(sqlite3.Error, ValueError):
            self._status = self.control.status() if self.control else {}
        when = parse_time(self._status.get("last_success"))
        if when is None:
            when = parse_time(self.reader.meta("sync.completed_at"))
        self._last_success = when
        self._header = (
            when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            if when
            else None
        )
        headers = ((SYNCED_HEADER, self._header),) if self._header else ()
        if headers != self._headers:
            self._headers = headers  # (the same tuple until it changes)

    def last_success(self) -> datetime | None:
        """When the mirror was last known to match upstream."""
        self.current()
        return self._last_success

    def header(self) -> str | None:
        """``X-Patchwork-Gateway-Synced``: cheap, for every answer."""
        self.current()
        return self._header

    def headers(self) -> tuple[tuple[str, str], ...]:
        """The same, as the headers every answer carries (the same tuple
        until it changes: cheap to compare).  Every answer asks, so the
        test of freshness is here, and a fresh status costs no further call;
        re-read as soon as the mirror moved (the sync may just have
        finished), else at most once a second."""
        if (
            self.reader.generation != self._read_generation
            or time.monotonic() - self._read_at >= STATUS_TTL
        ):
            self._reread()
        return self._headers

    async def counts(self) -> dict[str, int]:
        """Objects per resource, counted off the event loop, one count at a
        time, at most once a second (every few seconds while nothing changes)."""
        async with self._counting:
            age = time.monotonic() - self._counts_at
            changed = self._counted != self.reader.generation
            if age >= COUNTS_TTL or (changed and age >= STATUS_TTL):
                generation = self.reader.generation
                counts = {}
                for name, res in RESOURCES.items():
                    rows = await self.reader.fetch(f"SELECT count(*) FROM {res.table}")
                    counts[name] = rows[0][0]
                    if res.public_column:
                        rows = await self.reader.fetch(
                            f"SELECT count(*) FROM {res.table} WHERE {res.public_column} = 1"
                        )
                        counts[name + PUBLIC] = rows[0][0]
                self._counts, self._counts_at = counts, time.monotonic()
                self._counted = generation
        return self._counts

    def counts_soon(self) -> dict[str, int]:
        """The last counts at once, counted again in the background when
        due: a scrape of a large mirror never waits for them."""
        if not self._counting.locked():
            self._recount = asyncio.create_task(self._count_quietly())
        return self._counts

    async def _count_quietly(self) -> None:
        with contextlib.suppress(Exception):  # (the next scrape tries again)
            await self.counts()

    async def document(self, upstream: str, mode: str, details: bool = True) -> dict[str, Any]:
        """``/_gateway/status`` (and ``status``): every count with ``details``
        (see :func:`visible_counts`)."""
        sync = dict(self.current())
        when = self.last_success()
        sync["last_success"] = self.header()
        sync["lag_seconds"] = round((datetime.now(UTC) - when).total_seconds(), 1) if when else None
        initial = self.reader.meta("sync.state") or "not started"
        sync["running"] = sync_running(self.reader.path)
        if not sync["running"]:
            # The control file keeps the last words of a worker gone.
            if "state" in sync:
                sync["state"] = "stopped"
            if initial == "running":
                initial = "interrupted"
        if mode == "demo":
            sync["lag_seconds"] = None  # built from a recording: nothing to lag behind
        return {
            "upstream": upstream or None,
            "mode": mode,
            "initial_sync": initial,
            "sync": sync,
            "counts": visible_counts(await self.counts(), details),
        }


def status_handler(
    status: SyncStatus, upstream: str, mode: str, details: Callable[[web.Request], bool]
) -> Any:
    """``details``: whether a request may see every count."""

    async def handle(request: web.Request) -> web.Response:
        return web.json_response(await status.document(upstream, mode, details(request)))

    return handle
