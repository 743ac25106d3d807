"""Refreshing named objects now: the sync's one entry point for the server.

The server must sometimes show a change before it answers: a write it
forwarded (read your writes), a detail a download lacks.  It names what
to read (a :class:`~sync.refresh.Wanted`, and the filters of the events
it caused); this reads them upstream as the sync identity sees them,
with the newest events they name, and writes them to the mirror in one
transaction, exactly as the sync worker would.  The sync worker may
write the mirror meanwhile, from its own process: the store keeps the
newer reading of each object (``mirror.store``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosqlite

from mirror import schema, store
from sync.events import Follower
from sync.fetch import RECOVERABLE, Fetcher, list_url
from sync.refresh import Change, Wanted, events_of, implied
from sync.upstream import Upstream

#: Events of a changed object read (the newest ones).
EVENTS = 20
#: What a refresh may fail with (upstream down, slow, or answering nonsense).
FAILURES: tuple[type[BaseException], ...] = (TimeoutError, *RECOVERABLE)

__all__ = ["FAILURES", "Change", "RefreshNow", "Wanted", "events_of", "implied"]


class RefreshNow:
    """Reads named objects into the mirror, from the server's process."""

    def __init__(self, mirror: Path, upstream_url: str, token: str, timeout: float) -> None:
        self.mirror = mirror
        self.upstream = Upstream(upstream_url, token, concurrency=2, timeout=timeout, attempts=2)
        self.fetcher = Fetcher(self.upstream, upstream_url, concurrency=2)
        self._db: aiosqlite.Connection | None = None

    async def close(self) -> None:
        await self.upstream.close()
        if self._db is not None:
            await self._db.close()

    async def refresh(self, want: Wanted, events: dict[str, int]) -> None:
        """Read ``want`` and the newest events ``events`` filters name
        (``{"patch": 7}``) into the mirror; raises one of :data:`FAILURES`."""
        if self._db is None:
            self._db = await schema.connect(self.mirror)
        follower = Follower(self._db, self.fetcher)
        batch, _ = await follower.apply(await self._events(events))
        await follower.refresher.collect(want, batch)
        await store.write(self._db, batch)

    async def _events(self, filters: dict[str, int]) -> list[Any]:
        if not filters:
            return []
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        got = await self.fetcher.get(f"{list_url('events')}?{query}&per_page={EVENTS}", list)
        return got[0] if got else []
