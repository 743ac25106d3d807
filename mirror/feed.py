"""The change log read from outside: what changed after a position.

The store appends one row per changed object to the log (mirror.schema
``CHANGES``) in the transaction that changed it, numbered in commit
order.  The gateway's change feed (gateway.feed) reads it in windows:
the rows after a position, never more than ``scan`` of them, with the
log's head and low-water mark, so that a reader knows whether it has
everything up to a point, and whether the log still reaches back to
where it stands.  Reading holds no connection between windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from mirror.reader import Reader
from mirror.schema import EPOCH, LAST_SEQ
from mirror.store import CHANGES_LOW, EVERYTHING


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of the log: an object created, changed or deleted."""

    seq: int
    #: When the mirror learnt it (seconds since the epoch).
    at: float
    resource: str
    id: int
    op: str
    project_id: int | None
    parent_id: int | None
    #: The object's column values after the change (before, for a
    #: deletion), and the earlier values of those that changed.
    cols: dict[str, Any] | None
    was: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Window:
    """The log after a position, as far as ``until``."""

    entries: list[Entry]
    #: Everything up to here was read (the window's end, or the log's head).
    until: int
    #: The log's last ``seq`` when the window was read.
    head: int
    #: The last ``seq`` trimmed away: a position before it has missed some.
    low: int
    epoch: str
    #: About the bytes its entries take (what a cache of windows counts).
    size: int = 0


def _parsed(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    value = orjson.loads(raw)
    return value if isinstance(value, dict) else None


def cursor(epoch: str, seq: int) -> str:
    """A position in one mirror's log, as the feed gives it out."""
    return f"{epoch}-{seq}"


def position(reader: Reader) -> tuple[int, str]:
    """The log's head, and the mirror's epoch."""
    head = reader.rows(LAST_SEQ)[0][0]
    return int(head), reader.meta(EPOCH) or "0"


async def window(reader: Reader, after: int, scan: int) -> Window:
    """The rows after ``after``, at most ``scan`` of them, that change an
    object (not what every answer shows: states, meta values)."""
    # The head first: every row up to it is committed, so the rows read
    # next reach it.  The low-water mark last: a trim in between shows.
    head, epoch = position(reader)
    until = min(head, after + scan)
    rows = []
    if until > after:
        rows = await reader.fetch_fast(
            "SELECT seq, at, resource, id, op, project_id, parent_id, cols, was FROM changes "
            "WHERE seq > ? AND seq <= ? ORDER BY seq",
            (after, until),
        )
    low = int(reader.meta(CHANGES_LOW) or 0)
    entries = [
        Entry(seq, at, resource, obj_id, op, project, parent, _parsed(cols), _parsed(was))
        for seq, at, resource, obj_id, op, project, parent, cols, was in rows
        if resource != EVERYTHING
    ]
    # (A parsed entry takes about four times its JSON, plus the objects around it.)
    size = sum(300 + 4 * (len(row[7] or "") + len(row[8] or "")) for row in rows)
    return Window(entries, until, head, low, epoch, size)


class Windows:
    """The windows read since the log last moved, kept: every stream and
    held request waiting at one cursor (most of them, at the head) reads
    the log once when it moves, not once each."""

    #: Bytes of windows kept, and the most one window may take to be kept.
    BYTES = 4 << 20
    WINDOW_BYTES = 256 << 10

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self._head: tuple[int, str] = (-1, "")
        self._kept: dict[tuple[int, int], Window] = {}
        self.bytes = 0

    async def window(self, after: int, scan: int) -> Window:
        head = position(self.reader)
        if head != self._head:  # (moved, or another log: a snapshot installed)
            self._kept.clear()
            self._head, self.bytes = head, 0
        found = self._kept.get((after, scan))
        if found is None:
            found = await window(self.reader, after, scan)
            fits = found.size <= self.WINDOW_BYTES and self.bytes + found.size <= self.BYTES
            if fits:  # (a head moved meanwhile: the next look clears it)
                self._kept[(after, scan)] = found
                self.bytes += found.size
        return found
