"""Reading upstream as the sync reads it, for whoever compares the mirror
with it (``check``): the one door into ``sync/`` for reading.

The sync's polite client (its concurrency, time-outs and retries), its
URLs and page size, and its validation (404 is ``None``, 401 and 403
raise :class:`Refused`, anything else unusable :class:`UpstreamError`);
with the sync's rules for what it reads: which resources upstream may
refuse, which per-parent lists exist, and which parents may have
anything in them.  Nothing here writes to the mirror.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, NamedTuple

from mirror.resources import RESOURCES
from sync import upstream as _client
from sync.crawler import SUBLISTS, SubList, needed_parents
from sync.events import CURSOR
from sync.fetch import (
    API,
    MAY_BE_REFUSED,
    PER_PAGE,
    Fetcher,
    Refused,
    SyncError,
    has_next,
    last_page,
    list_url,
    pool,
)
from sync.progress import Progress
from sync.upstream import Source, Upstream, UpstreamError

__all__ = [
    "CURSOR",
    "MAY_BE_REFUSED",
    "PER_PAGE",
    "SUBLISTS",
    "Page",
    "Progress",
    "Refused",
    "SubList",
    "SyncError",
    "UpstreamError",
    "UpstreamReader",
    "connect",
    "needed_parents",
    "pool",
]


class Page(NamedTuple):
    """One page of a list, as upstream answered it."""

    items: list[Any]
    headers: dict[str, str]

    @property
    def has_next(self) -> bool:
        return has_next(self.headers)

    @property
    def last(self) -> int:
        """The number of the list's last page, as this page's ``Link`` says."""
        return last_page(self.headers.get("Link")) or 1


class UpstreamReader:
    """One upstream's API, read page by page and object by object, as the
    sync reads it; counts the requests it makes."""

    def __init__(self, source: Source, base_url: str, *, concurrency: int = 4) -> None:
        self._fetcher = Fetcher(source, base_url, concurrency=concurrency)
        self.concurrency = concurrency

    @property
    def requests(self) -> int:
        return self._fetcher.requests

    async def index(self) -> dict[str, Any] | None:
        """The API index (``None``: no API there), quietly: a failure
        raises, and the caller says it once."""
        quiet = _client.log
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            got = await self._fetcher.get(f"{API}/", dict)
        finally:
            quiet.setLevel(level)
        return None if got is None else got[0]

    async def detail(self, resource: str, obj_id: int) -> dict[str, Any] | None:
        """One object's detail (``None``: gone upstream)."""
        got = await self._fetcher.get(f"{API}/{RESOURCES[resource].path}/{obj_id}/", dict)
        return None if got is None else got[0]

    async def page(self, resource: str, number: int, parent_id: int | None = None) -> Page | None:
        """Page ``number`` of a list (``None``: past its end, or its parent gone)."""
        url = list_url(resource, parent_id)
        got = await self._fetcher.get(f"{url}?page={number}&per_page={PER_PAGE}", list)
        return None if got is None else Page(got[0], got[1])

    async def first_page(self, resource: str) -> Page:
        """A top-level list's first page, which upstream always has."""
        got = await self.page(resource, 1)
        if got is None:
            raise UpstreamError(f"GET {list_url(resource)}: HTTP 404")
        return got

    async def pages(self, resource: str, first: Page) -> AsyncGenerator[Page, None]:
        """Every page of a top-level list in order, from ``first``,
        ``concurrency`` of them fetched ahead; past the last page the first
        one named, ``next`` links are followed."""
        yield first
        headers = first.headers
        if not has_next(headers):
            return
        numbers = iter(range(2, first.last + 1))
        ahead: list[tuple[int, asyncio.Task[Page | None]]] = []

        def top_up() -> None:
            while len(ahead) < self.concurrency:
                number = next(numbers, None)
                if number is None:
                    return
                ahead.append((number, asyncio.ensure_future(self.page(resource, number))))

        number = 1
        try:
            top_up()
            while ahead:
                number, task = ahead.pop(0)
                got = await task
                top_up()
                if got is None:
                    return  # the list shrank under us
                yield got
                headers = got.headers
                if not has_next(headers):
                    return
            while has_next(headers):  # the list grew under us
                number += 1
                got = await self.page(resource, number)
                if got is None:
                    return
                yield got
                headers = got.headers
        finally:
            for _, task in ahead:
                task.cancel()
            await asyncio.gather(*(task for _, task in ahead), return_exceptions=True)

    async def whole_list(self, child: str, parent_id: int) -> list[Any]:
        """Every page of a parent's comments or checks (what pages there
        were, if the parent is gone or the list shrinks under us)."""
        items: list[Any] = []
        number = 1
        while True:
            got = await self.page(child, number, parent_id)
            if got is None:
                return items
            items.extend(got.items)
            if not got.has_next:
                return items
            number += 1


@contextlib.asynccontextmanager
async def connect(
    base_url: str,
    token: str,
    *,
    concurrency: int,
    timeout: float,
    attempts: int,
    max_backoff: float,
) -> AsyncIterator[UpstreamReader]:
    """The sync's client to ``base_url``, saying why it retries (once): a
    reader waits on upstream."""
    client = Upstream(
        base_url,
        token,
        concurrency=concurrency,
        timeout=timeout,
        attempts=attempts,
        max_backoff=max_backoff,
        say_retries=True,
    )
    try:
        yield UpstreamReader(client, base_url, concurrency=concurrency)
    finally:
        await client.close()
