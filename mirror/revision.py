"""Counts, ordered ids and cached pages revised by the change log, not read again.

At a million patches, counting a big project's list or reading its
ordered ids costs tens to hundreds of milliseconds; a change of one of
its patches (a state, a check) must not make the next reader pay it.
A kept count or list of ids remembers the change log's ``seq`` it was
read at (in the same snapshot); for each later change to a row its list
may hold (mirror.dependencies), where the list's filters decide exactly
which rows it holds:

* a count adds one for a row it now holds and did not, and takes one
  away for a row it no longer holds;
* ordered ids are left as they are when no row entered or left and no
  ordering column changed; otherwise the rows changed are taken out
  (found by bisection on their ordering values as they were) and those
  held now put back in order, found by bisection (their ordering values
  from the change log; those of rows in place read by id, in the
  snapshot the changes were read in).  An ordering on anything but the
  table's own columns (a joined name) is read again instead.  The ids
  are kept in chunks (:class:`Ids`), so that a revision copies what it
  changes, not the whole list;
* a cached full page of a list (:class:`Window`) stays as it is when
  rows enter or leave after its last row and the number of pages stays.

Where the filters do not decide (a search), the entry is dropped and
read again, as before.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from mirror.dependencies import Changed, Membership

#: Values of a row's ordering columns, by id.
Probe = Callable[[int], Sequence[Any] | None]
_TERM = re.compile(r"t\.(\w+)( DESC)?")


@dataclass(frozen=True, slots=True)
class Counted:
    count: int
    #: The change log's last seq when it was counted.
    seq: int


#: Ids in one chunk of :class:`Ids` (split at twice as many): a revision
#: copies the chunks it changes (32 KB each) and the list of chunks, never
#: the millions of ids of a list of events.
CHUNK = 8192
#: Rows of equal ordering values looked through for the one taken out.
TIES = 64


class Ids:
    """A list's ordered ids: arrays of about :data:`CHUNK` ids each, 4
    bytes an id (8 once one passes 2**31).

    A kept value is never changed in place: a revision changes a
    :meth:`copy`, which shares every chunk until it changes one.  One
    array would cost a copy of all of it per revision, and an insertion
    at the front of newest-first events a move of all of it (tens of
    milliseconds on the event loop, at each write, for 5.7 million ids).
    """

    __slots__ = ("_chunks", "_fresh", "_length", "_starts")

    def __init__(self, ids: array[int] | Iterable[int] = ()) -> None:
        if not isinstance(ids, array):
            ids = array("q", ids)
        self._chunks = [ids[at : at + CHUNK] for at in range(0, len(ids), CHUNK)]
        #: Whether each chunk belongs to this copy alone (it may change it).
        self._fresh = [True] * len(self._chunks)
        self._length = len(ids)
        self._starts: list[int] = []
        self._index(0)

    def _index(self, first: int) -> None:
        """Where each chunk from ``first`` on starts."""
        del self._starts[first:]
        at = self._starts[-1] + len(self._chunks[first - 1]) if first else 0
        for chunk in self._chunks[first:]:
            self._starts.append(at)
            at += len(chunk)

    def copy(self) -> Ids:
        """A copy to revise, sharing the chunks until it changes them."""
        other = Ids.__new__(Ids)
        other._chunks = list(self._chunks)
        other._fresh = [False] * len(self._chunks)
        other._starts = list(self._starts)
        other._length = self._length
        return other

    def __len__(self) -> int:
        return self._length

    @property
    def nbytes(self) -> int:
        """Bytes of ids (every chunk has one item size)."""
        return self._length * self._chunks[0].itemsize if self._chunks else 0

    def _locate(self, at: int) -> tuple[int, int]:
        """The chunk holding position ``at``, and the position in it."""
        k = bisect_right(self._starts, at) - 1
        return k, at - self._starts[k]

    def __getitem__(self, at: int) -> int:
        k, offset = self._locate(at)
        return self._chunks[k][offset]

    def page(self, start: int, stop: int) -> list[int]:
        """The ids from position ``start`` up to ``stop``."""
        out: list[int] = []
        stop = min(stop, self._length)
        while start < stop:
            k, offset = self._locate(start)
            part = self._chunks[k][offset : offset + stop - start].tolist()
            out.extend(part)
            start += len(part)
        return out

    def tolist(self) -> list[int]:
        return self.page(0, self._length)

    def _own(self, k: int) -> array[int]:
        if not self._fresh[k]:
            self._chunks[k] = array(self._chunks[k].typecode, self._chunks[k])
            self._fresh[k] = True
        return self._chunks[k]

    def insert(self, at: int, obj_id: int) -> None:
        """Put ``obj_id`` at position ``at`` (the end: ``len``)."""
        if not self._chunks:
            self._chunks, self._fresh = [array("i")], [True]
            self._index(0)
        if self._chunks[0].typecode == "i" and not -(2**31) <= obj_id < 2**31:
            self._chunks = [array("q", chunk) for chunk in self._chunks]
            self._fresh = [True] * len(self._chunks)
        k, offset = self._locate(at) if at < self._length else (len(self._chunks) - 1, None)
        chunk = self._own(k)
        chunk.insert(len(chunk) if offset is None else offset, obj_id)
        self._length += 1
        if len(chunk) > 2 * CHUNK:
            self._chunks[k : k + 1] = [chunk[:CHUNK], chunk[CHUNK:]]
            self._fresh[k : k + 1] = [True, True]
        self._index(k)

    def __delitem__(self, at: int) -> None:
        k, offset = self._locate(at)
        chunk = self._own(k)
        del chunk[offset]
        self._length -= 1
        if not chunk:
            del self._chunks[k], self._fresh[k]
        self._index(k)

    def find(self, obj_id: int) -> int | None:
        """Where ``obj_id`` is, by a byte search (a few ms for millions)."""
        for k, chunk in enumerate(self._chunks):
            size = chunk.itemsize
            if not -(2 ** (8 * size - 1)) <= obj_id < 2 ** (8 * size - 1):
                return None
            needle, haystack = array(chunk.typecode, [obj_id]).tobytes(), chunk.tobytes()
            found = haystack.find(needle)
            while found >= 0 and found % size:
                found = haystack.find(needle, found + 1)
            if found >= 0:
                return self._starts[k] + found // size
        return None


@dataclass(frozen=True, slots=True)
class Ordered:
    ids: Ids
    seq: int
    #: The ORDER BY, as (column, descending) terms of the table's own
    #: columns; None: it orders by something else (it cannot be revised).
    order: tuple[tuple[str, bool], ...] | None


@lru_cache(maxsize=512)  # (a few orderings, asked for every list)
def order_terms(order_by: str) -> tuple[tuple[str, bool], ...] | None:
    """``t.date DESC, t.id`` as ((date, True), (id, False)); None unless
    every term is a plain column of the table."""
    terms = []
    for part in order_by.split(","):
        match = _TERM.fullmatch(part.strip())
        if match is None:
            return None
        terms.append((match.group(1), match.group(2) is not None))
    return tuple(terms)


def _told(change: Changed, member: Membership) -> bool:
    """Whether the list's filters say exactly if it held the row before
    ``change`` and after (the row's values are known, and decide)."""
    if change.before is None and change.after is None:
        return False
    return member.decides(change.before) and member.decides(change.after)


def revise_count(value: Counted, member: Membership, changes: list[Changed]) -> Counted | None:
    """The count after ``changes``; None when the filters do not tell."""
    count = value.count
    for change in changes:
        if change.seq <= value.seq:
            continue  # (counted already)
        if not _told(change, member):
            return None
        count += member.holds(change.after) - member.holds(change.before)
    return Counted(count, value.seq)


@dataclass(frozen=True, slots=True)
class Window:
    """A full page of a list, as a cached answer shows it: where it ends
    (its last row's ordering values) and the list's count, which its
    ``Link`` header shows as a number of pages.

    A row entering or leaving the list after the page's last row (in the
    list's order: appended to a project's patches, say) leaves the page's
    rows as they were; the answer changes only if the number of pages
    does.  A change on the page itself reaches the answer by its row.
    """

    order: tuple[tuple[str, bool], ...]
    last: tuple[Any, ...]
    count: int
    per_page: int


def pages(count: int, per_page: int) -> int:
    """How many pages a list of ``count`` rows has (one when empty), as
    Django's paginator counts them: what a page's ``Link`` header shows."""
    return max(1, -(-count // per_page))


def revise_window(window: Window, member: Membership, changes: list[Changed]) -> Window | None:
    """The page after ``changes``, when they leave its answer as it is;
    None when they may not (the filters do not tell, a row before or on
    it, another number of pages)."""
    columns = [column for column, _ in window.order]
    for change in changes:
        if not _told(change, member):
            return None
        for row in (change.before, change.after):
            if not member.holds(row):
                continue
            assert row is not None
            if any(c not in row for c in columns):
                return None
            if not _before(window.last, [row[c] for c in columns], window.order):
                return None  # (before the page's end: its rows move)
    counted = revise_count(Counted(window.count, seq=-1), member, changes)  # (all newer)
    if counted is None or pages(counted.count, window.per_page) != pages(
        window.count, window.per_page
    ):
        return None
    return Window(window.order, window.last, counted.count, window.per_page)


def _rank(value: Any) -> tuple[int, Any]:
    """SQLite's order of values: NULL, numbers, text, blobs."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, bytes(value))


def _before(a: Sequence[Any], b: Sequence[Any], order: tuple[tuple[str, bool], ...]) -> bool:
    """Whether a row with ordering values ``a`` comes before one with ``b``."""
    for x, y, (_, descending) in zip(a, b, order, strict=True):
        rx, ry = _rank(x), _rank(y)
        if rx != ry:
            return (rx > ry) if descending else (rx < ry)
    return False


def revise_order(
    value: Ordered, member: Membership, changes: list[Changed], probe: Probe
) -> Ordered | None:
    """The ordered ids after ``changes``; None when they cannot be told."""
    pending = [c for c in changes if c.seq > value.seq]
    if not pending:
        return value
    order = value.order
    if order is None:
        return None
    columns = [column for column, _ in order]
    last: dict[int, Mapping[str, Any] | None] = {}
    #: The rows changed that the ids held, and their ordering values then.
    was_held: dict[int, Mapping[str, Any]] = {}
    moved = False
    for change in pending:
        if not _told(change, member):
            return None
        held_before, held_after = member.holds(change.before), member.holds(change.after)
        if held_before != held_after or (
            held_after and any(change.before.get(c) != change.after.get(c) for c in columns)  # type: ignore[union-attr]
        ):
            moved = True
        if change.id not in last and held_before:
            was_held[change.id] = change.before  # type: ignore[assignment]
        last[change.id] = change.after if held_after else None
    if not moved:
        return value  # (the same rows, in the same order)
    ids = value.ids.copy()

    def held(obj_id: int) -> Sequence[Any] | None:
        """A row's ordering values where the ids hold it (a changed row
        not yet taken out: as it was)."""
        row = was_held.get(obj_id)
        return probe(obj_id) if row is None else [row.get(c) for c in columns]

    for obj_id in list(was_held):
        at = _held_at(ids, obj_id, held(obj_id), order, held)
        if at is None:
            return None  # (not where the filters say: read the list again)
        del ids[at]
        del was_held[obj_id]
    for obj_id, row in last.items():
        if row is None:
            continue
        if any(c not in row for c in columns):
            return None
        at = _position(ids, [row[c] for c in columns], order, probe)
        if at is None:
            return None
        ids.insert(at, obj_id)
    return Ordered(ids, value.seq, order)


def _held_at(
    ids: Ids, obj_id: int, key: Sequence[Any] | None, order: tuple[tuple[str, bool], ...],
    probe: Probe,
) -> int | None:  # fmt: skip
    """Where ``obj_id``, ordered by ``key``, is among ``ids``: by
    bisection, then among its ties; by a search of every id if not there."""
    at = _position(ids, key, order, probe) if key is not None else None
    if at is not None:
        for near in range(at, min(at + TIES, len(ids))):
            if ids[near] == obj_id:
                return near
    return ids.find(obj_id)


def _position(
    ids: Ids, key: Sequence[Any], order: tuple[tuple[str, bool], ...], probe: Probe
) -> int | None:
    """Where a row ordered by ``key`` goes among ``ids`` (bisection)."""
    lo, hi = 0, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        found = probe(ids[mid])
        if found is None:
            return None  # (a row in place is gone: read the list again)
        if _before(found, key, order):
            lo = mid + 1
        else:
            hi = mid
    return lo
