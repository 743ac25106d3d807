"""Reading upstream objects into batches: the one place that GETs for the sync.

The initial crawl, the event follower and the sweeps all fetch the same
things: a page of a list, an object's detail (an upsert, or a deletion
when upstream answers 404), a parent's complete comment or check list,
and a bundle's patch order, which only its mbox shows.
:class:`Fetcher` does each once, validating what upstream sends, and
counts the requests it makes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import orjson

from mirror.resources import RESOURCES
from mirror.store import Batch
from mirror.versions import LATEST
from sync.normalize import BadUpstreamData, Normalizer
from sync.upstream import Source, UpstreamError

log = logging.getLogger(__name__)

API = f"/api/{LATEST}"
PER_PAGE = 250
#: Resources upstream may refuse to the sync identity: those anonymous
#: callers may not read (people, users).
MAY_BE_REFUSED = frozenset(name for name, res in RESOURCES.items() if res.requires_auth)

#: Where each message of an mbox starts (Patchwork's ``From patchwork
#: <date>`` line; a body line starting with "From " is quoted ">From "),
#: and a message's Patchwork id.
_MBOX_MESSAGE = re.compile(rb"^From patchwork ", re.M)
_MBOX_PATCH_ID = re.compile(rb"^X-Patchwork-Id: ([0-9]{1,18})\r?$", re.M)

_LAST = re.compile(r'<([^>]*)>;\s*rel="last"')
_NEXT = re.compile(r'<([^>]*)>;\s*rel="next"')
_PAGE = re.compile(r"[?&]page=([0-9]+)")

T = TypeVar("T")


class SyncError(Exception):
    """The sync cannot go on (wrong upstream, refused credentials...)."""


class Refused(SyncError):
    """Upstream answered 401 or 403."""


#: Failures the sync waits out and retries: upstream's, and the mirror's
#: own (a full disk, a read-only file, a lock held too long).
RECOVERABLE: tuple[type[BaseException], ...] = (UpstreamError, SyncError, OSError, sqlite3.Error)


def last_page(link: str | None) -> int | None:
    """The number of the ``last`` page a ``Link`` header names."""
    match = _LAST.search(link or "")
    if not match:
        return None
    page = _PAGE.search(match.group(1))
    return int(page.group(1)) if page else 1


def has_next(headers: dict[str, str]) -> bool:
    return bool(_NEXT.search(headers.get("Link", "")))


def list_url(resource: str, parent_id: int | None = None) -> str:
    """The API path of a resource's list (a sub-list needs its parent's id)."""
    res = RESOURCES[resource]
    if res.parent is None:
        return f"{API}/{res.path}/"
    parent = RESOURCES[res.parent.resource]
    return f"{API}/{parent.path}/{parent_id}/{res.path}/"


def mbox_patch_ids(mbox: bytes) -> list[int]:
    """The ``X-Patchwork-Id`` of each message of an mbox, in order.

    Only headers are read: a message's body may quote such a line.
    """
    ids: list[int] = []
    for start in _MBOX_MESSAGE.finditer(mbox):
        end = mbox.find(b"\n\n", start.end())
        found = _MBOX_PATCH_ID.search(mbox, start.end(), len(mbox) if end < 0 else end)
        if found is not None:
            ids.append(int(found.group(1)))
    return list(dict.fromkeys(ids))


async def pool(items: Iterable[T], work: Callable[[T], Awaitable[None]], concurrency: int) -> None:
    """Run ``work`` over ``items``, ``concurrency`` at a time; one failure stops all."""
    iterator = iter(items)

    async def worker() -> None:
        for item in iterator:
            await work(item)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(worker())
    except BaseExceptionGroup as failed:
        # Callers handle an upstream failure, not a group of them.
        raise failed.exceptions[0] from None


class Fetcher:
    """GETs from one upstream, normalising what it reads into batches."""

    def __init__(self, source: Source, base_url: str, *, concurrency: int = 4) -> None:
        self.source = source
        self.normalizer = Normalizer(base_url)
        self.concurrency = concurrency
        self.requests = 0
        #: Resources upstream refuses to show the sync identity (people...).
        self.refused: set[str] = set()

    async def get(self, path: str, expect: type) -> tuple[Any, dict[str, str]] | None:
        """GET a JSON document; ``None`` if upstream has no such thing (404).

        A 401/403 raises :class:`Refused`: the credentials were revoked or
        the identity may not see this; either way, data would be missing.
        """
        resp = await self.source.get(path)
        self.requests += 1
        if resp.status == 404:
            return None
        if resp.status in (401, 403):
            try:
                reason = resp.json().get("detail", "")
            except (orjson.JSONDecodeError, AttributeError):
                reason = ""
            raise Refused(f"upstream refused GET {path} ({resp.status} {reason})".strip())
        if resp.status != 200:
            raise UpstreamError(f"GET {path}: HTTP {resp.status}")
        try:
            data = resp.json()
        except orjson.JSONDecodeError:
            raise UpstreamError(f"GET {path}: not JSON") from None
        if not isinstance(data, expect):
            raise UpstreamError(f"GET {path}: expected a JSON {expect.__name__}")
        return data, resp.headers

    def normalize(
        self, resource: str, items: list[Any], batch: Batch, parent_id: int | None = None
    ) -> list[int]:
        """Normalise ``items`` into ``batch``; the ids of those kept."""
        ids = []
        for item in items:
            try:
                ids.append(self.normalizer.add(resource, item, batch, parent_id=parent_id))
            except BadUpstreamData as exc:
                log.warning("skipping a malformed %s object: %s", resource, exc)
        return ids

    async def detail(self, resource: str, obj_id: int, batch: Batch) -> dict[str, Any] | None:
        """Upsert one object into ``batch`` from its detail, or delete it if gone.

        Returns upstream's object (``None`` if gone or not visible).  An
        object the sync identity may not see at all (people, users when
        anonymous) is left as the mirror has it.
        """
        if resource in self.refused:
            return None
        try:
            got = await self.get(f"{API}/{RESOURCES[resource].path}/{obj_id}/", dict)
        except Refused:
            if resource not in MAY_BE_REFUSED:
                raise
            self.refused.add(resource)
            return None
        if got is None:
            batch.deletions.append((resource, obj_id))
            return None
        self.normalize(resource, [got[0]], batch)
        return got[0]

    async def bundle_order(self, mbox_path: str) -> list[int] | None:
        """A bundle's patch ids in its own order, from its mbox (``None``:
        upstream shows it no more, or not to the sync identity).

        The whole mbox is read (bounded by the client's ``max_bytes``) for
        the few bytes of its ``X-Patchwork-Id`` headers.  Upstream failing
        on it (after retries), or an mbox too large, leaves the order
        unknown: never a reason to stop syncing everything else.
        """
        try:
            resp = await self.source.get(mbox_path)
        except UpstreamError as exc:
            log.warning("GET %s: %s; bundle order unknown", mbox_path, exc)
            return None
        finally:
            self.requests += 1
        if resp.status != 200:
            if resp.status not in (401, 403, 404):
                log.warning("GET %s: HTTP %d; bundle order unknown", mbox_path, resp.status)
            return None
        return mbox_patch_ids(resp.body)

    async def sublist(self, child: str, parent_id: int, batch: Batch) -> list[int] | None:
        """Every page of a parent's comments or checks into ``batch``.

        A list read whole replaces the parent's children (those missing are
        gone upstream); a parent that answers 404 is itself gone.  Returns
        the children's ids, or ``None`` if the parent is gone.
        """
        res = RESOURCES[child]
        assert res.parent is not None
        url = list_url(child, parent_id)
        ids: list[int] = []
        page = 1
        while True:
            got = await self.get(f"{url}?page={page}&per_page={PER_PAGE}", list)
            if got is None:
                if page == 1:  # the parent is gone upstream
                    batch.deletions.append((res.parent.resource, parent_id))
                    return None
                return ids  # the list shrank under us: keep what we have
            ids.extend(self.normalize(child, got[0], batch, parent_id=parent_id))
            if not has_next(got[1]):
                # The whole list: children not in it are gone upstream.
                batch.children.append((child, parent_id, ids))
                return ids
            page += 1
