"""Following another gateway: a snapshot to start from, then its change feed.

When the configured upstream is itself a gateway (its ``/_gateway/changes``
answers), the mirror is a replica of that gateway's:

1. a new replica downloads ``/_gateway/snapshot`` (resuming an interrupted
   download with ``Range``), checks it (schema, layout, SQLite's integrity
   check) and installs it in one transaction (mirror.snapshot);
2. it then follows the feed from the snapshot's cursor, with ``expand=1``:
   each change carries the object as the API shows it, normalised and
   written as the sync writes what it reads; deletions are applied; the
   cursor commits with the objects, so a replica killed at any moment
   resumes where its mirror stands.  No sweeps, no event polls: the feed
   is complete.  A cursor the source's log no longer keeps (410) starts
   over from a new snapshot.

The replica presents ``[server] replication_token`` (give every gateway of
a fan-out the same one) to get the whole mirror; without it, what
anonymous callers may read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import aiosqlite
import orjson

from mirror import schema, snapshot, store
from mirror.resources import RESOURCES
from mirror.store import Batch
from sync.fetch import mbox_patch_ids
from sync.normalize import BadUpstreamData, Normalizer
from sync.refresh import stale_bundle_orders
from sync.upstream import USER_AGENT, UpstreamError

log = logging.getLogger(__name__)

FEED = "/_gateway/changes"
SNAPSHOT = "/_gateway/snapshot"
#: Meta key: the gateway this mirror is a replica of.
SOURCE = "replica.of"
#: Changes asked for at once, and how long the source holds a poll.
PAGE = 500
HOLD_SECONDS = 30
#: Bytes of one feed answer (the source bounds its own at 8 MiB and more).
MAX_PAGE_BYTES = 64 << 20


async def is_gateway(base_url: str, timeout: float = 15.0) -> bool:
    """Whether ``base_url`` is another gateway (its change feed answers)."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(base_url.rstrip("/") + FEED, allow_redirects=False) as resp,
        ):
            if resp.status != 200 or resp.content_type != "application/json":
                return False
            body = orjson.loads(await resp.content.read(65536))
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError, ValueError):
        return False
    return isinstance(body, dict) and isinstance(body.get("next"), str)


def is_replica(mirror: Path) -> bool:
    """Whether ``mirror`` is already a replica (its source may be down now)."""
    if not mirror.exists():
        return False
    try:
        db = sqlite3.connect(f"file:{mirror}?mode=ro", uri=True)
        try:
            return db.execute("SELECT 1 FROM meta WHERE key = ?", (SOURCE,)).fetchone() is not None
        finally:
            db.close()
    except sqlite3.Error:
        return False


class Replica:
    """A mirror following another gateway's."""

    def __init__(self, mirror: Path, base_url: str, token: str, timeout: float = 120.0) -> None:
        self.mirror = mirror
        self.base_url = base_url.rstrip("/")
        self.headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=timeout)
        self.normalizer = Normalizer(self.base_url)
        self.requests = 0
        self.applied = 0

    async def run(self, once: bool) -> None:
        """Start from a snapshot if need be, then follow the feed (``once``:
        until it has nothing more, then return)."""
        async with aiohttp.ClientSession(headers=self.headers, timeout=self.timeout) as session:
            cursor = await self._cursor()
            if cursor is None:
                cursor = await self.bootstrap(session)
            db = await schema.connect(self.mirror)
            try:
                while True:
                    page = await self._page(session, cursor, 0 if once else HOLD_SECONDS)
                    if page is None:  # (gone from the source's log: start over)
                        await db.close()
                        cursor = await self.bootstrap(session)
                        db = await schema.connect(self.mirror)
                        continue
                    await self._apply(db, page, session)
                    cursor = page["next"]
                    if once and not page["more"]:
                        return
            finally:
                await db.close()

    async def _cursor(self) -> str | None:
        if not self.mirror.exists():
            return None
        db = await schema.connect(self.mirror)
        try:
            source = await store.get_meta(db, SOURCE)
            if source is not None and source != self.base_url:
                raise UpstreamError(f"this mirror is a replica of {source}, not {self.base_url}")
            return await store.get_meta(db, snapshot.REPLICA_CURSOR)
        finally:
            await db.close()

    async def bootstrap(self, session: aiohttp.ClientSession) -> str:
        """Download the source's snapshot and install it; its cursor."""
        download = self.mirror.with_name(self.mirror.name + ".download")
        started = time.monotonic()
        await self._download(session, download)
        cursor = await asyncio.to_thread(snapshot.install, download, self.mirror)
        download.unlink(missing_ok=True)
        db = await schema.connect(self.mirror)
        try:
            # (What it mirrors from now on: `check` compares it with its source.)
            await store.set_meta(db, SOURCE, self.base_url)
            await store.set_meta(db, "upstream.url", self.base_url)
        finally:
            await db.close()
        log.info(
            "installed %s's snapshot (cursor %s) in %.1f s",
            self.base_url,
            cursor,
            time.monotonic() - started,
        )
        return cursor

    async def _download(self, session: aiohttp.ClientSession, target: Path) -> None:
        """The snapshot into ``target``, resumed where an earlier try stopped."""
        url = self.base_url + SNAPSHOT
        tag = None
        attempt = 0
        while attempt < 30:
            have = target.stat().st_size if target.exists() else 0
            headers: dict[str, str] = {}
            if have and tag:
                headers = {"Range": f"bytes={have}-", "If-Range": tag}
            try:
                self.requests += 1
                async with session.get(url, headers=headers) as resp:
                    if resp.status == 503:
                        wait = float(resp.headers.get("Retry-After", "10"))
                        log.info("the source is making its snapshot; again in %.0f s", wait)
                        await asyncio.sleep(min(wait, 60))
                        continue
                    if resp.status not in (200, 206):
                        raise UpstreamError(f"GET {SNAPSHOT}: HTTP {resp.status}")
                    tag = resp.headers.get("ETag")
                    if resp.headers.get("X-Gateway-Snapshot") != "full":
                        log.warning("the source gives this replica what anonymous callers see")
                    mode = "ab" if resp.status == 206 else "wb"
                    with open(target, mode, opener=_private) as out:
                        async for chunk in resp.content.iter_chunked(1 << 20):
                            out.write(chunk)
                    return
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.info("snapshot download interrupted (%s); resuming", exc)
                attempt += 1
                await asyncio.sleep(min(2**attempt, 30))
        raise UpstreamError(f"GET {SNAPSHOT}: no complete download after 30 tries")

    async def _page(
        self, session: aiohttp.ClientSession, cursor: str, wait: int
    ) -> dict[str, Any] | None:
        """One answer of the feed after ``cursor`` (None: gone, start over)."""
        params = {"since": cursor, "limit": str(PAGE), "expand": "1", "wait": str(wait)}
        attempt = 0
        while True:
            try:
                self.requests += 1
                async with session.get(self.base_url + FEED, params=params) as resp:
                    if resp.status == 410:
                        log.warning("the source's change log no longer reaches our cursor")
                        return None
                    body = await resp.content.read(MAX_PAGE_BYTES + 1)
                    if resp.status == 200 and len(body) <= MAX_PAGE_BYTES:
                        page = orjson.loads(body)
                        if isinstance(page, dict) and isinstance(page.get("changes"), list):
                            return page
                    reason = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
                reason = str(exc) or type(exc).__name__
            wait_for = min(2 ** min(attempt, 6), 60)
            attempt += 1
            log.warning("the source's feed failed (%s); again in %d s", reason, wait_for)
            await asyncio.sleep(wait_for)

    async def _apply(
        self, db: aiosqlite.Connection, page: dict[str, Any], session: aiohttp.ClientSession
    ) -> None:
        """Write one answer's changes, with the cursor after them (and the
        order of public bundles made or changed: the API does not show it,
        their mbox does, as the sync reads it)."""
        batch = Batch()
        for entry in page["changes"]:
            resource, obj = entry.get("resource"), entry.get("object")
            try:
                if entry["op"] == "deleted":
                    batch.deletions.append((RESOURCES[resource].name, int(entry["id"])))
                elif obj is not None:  # (None: gone since; a later change says so)
                    self.normalizer.add(resource, obj, batch)
            except (BadUpstreamData, KeyError, TypeError, ValueError) as exc:
                log.warning("skipping a change the source sent malformed: %s", exc)
        gone = {obj_id for resource, obj_id in batch.deletions if resource == "bundles"}
        bundles = {i: d for i, d in batch.docs.get("bundles", {}).items() if i not in gone}
        for bundle_id, path in sorted((await stale_bundle_orders(db, bundles)).items()):
            order = await self._bundle_order(session, path)
            if order is not None:
                batch.bundle_orders[bundle_id] = order
        batch.meta[snapshot.REPLICA_CURSOR] = page["next"]
        batch.meta["sync.completed_at"] = datetime.now(UTC).isoformat()
        await store.write(db, batch)
        self.applied += len(page["changes"])

    async def _bundle_order(self, session: aiohttp.ClientSession, path: str) -> list[int] | None:
        """A public bundle's patch ids in its order, from its mbox at the source."""
        try:
            self.requests += 1
            async with session.get(self.base_url + path) as resp:
                if resp.status != 200:
                    return None
                return mbox_patch_ids(await resp.content.read(MAX_PAGE_BYTES))
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("GET %s: %s; bundle order unknown until it changes", path, exc)
            return None


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)
