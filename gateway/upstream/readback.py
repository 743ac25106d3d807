"""Read your writes: after a write upstream, refresh what it changed.

A write goes upstream with the caller's credentials.  When upstream has
accepted it, and before the gateway answers, what the write changed is
read again as the sync identity sees it (the mirror holds what the sync
identity sees) and written to the mirror, with the events it caused; the
caches are dropped.  The caller's very next read from the gateway shows
the change, without waiting for the sync worker.

The sync worker may write the mirror meanwhile, in its own process: each
stored object remembers when its reading was taken and an older reading
never replaces a newer one (``mirror.store``), so neither undoes the
other.  A read-back that fails (upstream slow or down right after the
write) is logged and left to the sync worker; the write's answer is
unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import xmlrpc.client
from collections.abc import Iterable
from pathlib import Path
from xml.parsers.expat import ExpatError

import orjson

from gateway.api.routing import ApiRoute
from sync.now import FAILURES, Change, RefreshNow, Wanted, events_of, implied

log = logging.getLogger(__name__)

#: Longest a write's answer waits for its read-back.
READBACK_SECONDS = 10.0
#: Read-backs under way or waiting at once (they spend the sync identity's
#: upstream budget, one at a time); beyond, a write is left to the sync.
MAX_PENDING = 4


def wanted(method: str, route: ApiRoute, answer_body: bytes) -> tuple[Wanted, dict[str, int]]:
    """What a successful API write changed (sync.refresh.implied): objects
    to read again, and the filters of the events it may have caused."""
    res = route.resource
    if res is None:
        return Wanted(), {}
    key = int(route.key) if route.key and route.key.isdigit() else None
    if key is None and res.parent is None:
        # A new bundle (or a project named by link name): the id is in
        # upstream's answer.
        try:
            body = orjson.loads(answer_body) if answer_body else None
        except orjson.JSONDecodeError:
            body = None
        found = body.get("id") if isinstance(body, dict) else None
        key = found if type(found) is int else None
    # (Deleted, or made private: upstream answers 404, and it goes.)
    change = Change(res.name, key, route.parent_id, "written")
    return implied(change), events_of(change)


def xmlrpc_succeeded(answer_body: bytes) -> bool:
    """Whether an XML-RPC answer is a result, not a fault (Patchwork answers
    both with HTTP 200: "No authentication credentials given" is a fault)."""
    head = answer_body[:512].lstrip()
    return b"<methodResponse>" in head and b"<fault>" not in answer_body


def xmlrpc_wanted(body: bytes) -> tuple[Wanted, dict[str, int]]:
    """What a pwclient XML-RPC call changed (``patch_set``, ``check_create``)."""
    want, events = Wanted(), dict[str, int]()
    try:
        params, method = xmlrpc.client.loads(body)
    except (ExpatError, xmlrpc.client.ResponseError, ValueError, TypeError):
        return want, events
    if method in ("patch_set", "check_create") and params and type(params[0]) is int:
        patch = Change("patches", params[0], how="written")
        want, events = implied(patch), events_of(patch)
        if method == "check_create":
            want.update(implied(Change("checks", None, params[0])))
    return want, events


class ReadBack:
    """Refreshes the mirror after writes (and for downloads lacking a
    detail), bounded: one at a time, a few waiting, each within a time."""

    def __init__(self, path: Path, upstream_url: str, token: str, timeout: float) -> None:
        self.now = RefreshNow(path, upstream_url, token, timeout)
        self._lock = asyncio.Lock()
        self._pending = 0

    async def close(self) -> None:
        await self.now.close()

    async def refresh(self, want: Wanted, events: dict[str, int]) -> bool | None:
        """Read back ``want`` and the newest events it names; whether done
        (``None``: skipped, too many are waiting; the sync will catch up)."""
        if not want:
            return True
        if self._pending >= MAX_PENDING:
            log.debug("too many read-backs waiting; this one is left to the sync")
            return None
        self._pending += 1
        try:
            async with asyncio.timeout(READBACK_SECONDS), self._lock:
                await self.now.refresh(want, events)
            return True
        except FAILURES as exc:
            log.warning("reading back a write failed (%s); the sync will catch up", exc)
            return False
        finally:
            self._pending -= 1

    async def details(self, refs: Iterable[tuple[str, int]]) -> bool | None:
        """Read these objects' details into the mirror now (a download needs
        them); as :meth:`refresh`."""
        return await self.refresh(Wanted(details=set(refs)), {})
