"""Counts and ordered ids revised by the change log, not read again.

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
  ordering column changed; otherwise the rows changed are taken out and
  those held now put back in order, found by bisection (their ordering
  values from the change log; those of rows in place read by id, in the
  snapshot the changes were read in).  An ordering on anything but the
  table's own columns (a joined name) is read again instead.

Where the filters do not decide (a search), the entry is dropped and
read again, as before.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Ordered:
    ids: array[int]
    seq: int
    #: The ORDER BY, as (column, descending) terms of the table's own
    #: columns; None: it orders by something else (it cannot be revised).
    order: tuple[tuple[str, bool], ...] | None


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


def revise_count(value: Counted, member: Membership, changes: list[Changed]) -> Counted | None:
    """The count after ``changes``; None when the filters do not tell."""
    count = value.count
    for change in changes:
        if change.seq <= value.seq:
            continue  # (counted already)
        if change.before is None and change.after is None:
            return None
        if not (member.decides(change.before) and member.decides(change.after)):
            return None
        count += member.holds(change.after) - member.holds(change.before)
    return Counted(count, value.seq)


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
    #: The rows changed that the ids held (as they were when read).
    was_held: set[int] = set()
    moved = False
    for change in pending:
        if change.before is None and change.after is None:
            return None
        if not (member.decides(change.before) and member.decides(change.after)):
            return None
        held_before, held_after = member.holds(change.before), member.holds(change.after)
        if held_before != held_after or (
            held_after and any(change.before.get(c) != change.after.get(c) for c in columns)  # type: ignore[union-attr]
        ):
            moved = True
        if change.id not in last and held_before:
            was_held.add(change.id)
        last[change.id] = change.after if held_after else None
    if not moved:
        return value  # (the same rows, in the same order)
    ids = value.ids[:]
    for obj_id in was_held:
        try:
            del ids[ids.index(obj_id)]
        except ValueError:
            return None  # (not where the filters say: read the list again)
    for obj_id, row in last.items():
        if row is None:
            continue
        if any(c not in row for c in columns):
            return None
        if ids.typecode == "i" and not -(2**31) <= obj_id < 2**31:
            ids = array("q", ids)
        at = _position(ids, [row[c] for c in columns], order, probe)
        if at is None:
            return None
        ids.insert(at, obj_id)
    return Ordered(ids, value.seq, order)


def _position(
    ids: array[int], key: Sequence[Any], order: tuple[tuple[str, bool], ...], probe: Probe
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
