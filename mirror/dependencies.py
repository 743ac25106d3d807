"""What a cached answer was built from, and what a change of the mirror reaches.

While an answer is built, every read of the mirror notes what it read
(:func:`note`, into the set :func:`recording` opened):

* ``("ref", table, id)``: one object, read for itself (a detail, the page
  of a list), or looked for and not found (also when it was to be shown
  inside another);
* ``("embed", table)``: objects of a table shown inside others (a patch's
  submitter, a list item's project);
* ``("list", table, "*")``: a list or count over a table, or
  ``("list", table, "project", id)``, ``("list", table, "parent", id)``
  one narrowed to a project or to a parent (a patch's checks); with it,
  ``("member", Membership)``: which rows the list holds (its filters);
* ``("scope", table, "*")``: a look-up over a whole table (a filter's
  value by name, a table joined for an ordering);
* ``("*",)``: anything at all (the site's pages, which read widely).

Caches keep each entry with what it was built from (:class:`DependentCache`).
A row of the change log (mirror.store) reaches the object itself, every
list and look-up of its table (its project's, its parent's, before and
after a move), what embeds objects of its table when the change shows
there (a person's name, not a series' list of patches; a deletion, not a
creation: what waited for it noted its ref), and ``("*",)``; a change of
everything reaches every entry.  A list reached is kept when its filters
held the row neither before nor after the change (a patch of another
state, another submitter, older than ``since``), and a count or ordered
ids are revised rather than read again where the filters say exactly how
(mirror.reader).  An entry no change reached keeps its bytes, and its
``ETag``.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, TypeVar

from mirror.resources import RESOURCES, Resource

Dep = tuple[Any, ...]
#: What every answer depends on, and what reaches every one.
ANYTHING: Dep = ("*",)
#: Bytes a dependency costs an entry (its tuple, and its place in the index).
DEP_COST = 120

_reading: ContextVar[set[Dep] | None] = ContextVar("reading", default=None)


def note(dep: Dep) -> None:
    """Note that what is being built read ``dep`` (if anything is recorded)."""
    deps = _reading.get()
    if deps is not None:
        deps.add(dep)


def note_all(deps: Iterable[Dep]) -> None:
    found = _reading.get()
    if found is not None:
        found.update(deps)


@contextlib.contextmanager
def recording() -> Iterator[set[Dep]]:
    """Record what the reads within read (nested: the outer one gets it too)."""
    outer = _reading.get()
    deps: set[Dep] = set()
    token = _reading.set(deps)
    try:
        yield deps
    finally:
        _reading.reset(token)
        if outer is not None:
            outer.update(deps)


# -- which rows a list holds ---------------------------------------------------------

#: One filter of a list, on a column of its table: (op, column, value);
#: ``in`` and ``not in`` take a frozenset, ``nocase`` an ASCII-folded
#: string; ``contains`` (a search term, as LIKE '%term%' finds it) a tuple
#: of columns, any of which may hold the ASCII-folded term.
Constraint = tuple[str, Any, Any]
#: The operators :func:`_holds` decides.
OPERATORS = frozenset({"in", "not in", "nocase", ">=", "<", "contains"})
_ASCII_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(text: str) -> str:
    """Case folded as SQLite's NOCASE does: ASCII letters only."""
    return text.translate(_ASCII_FOLD)


def _columns(constraint: Constraint) -> tuple[str, ...]:
    column = constraint[1]
    return column if isinstance(column, tuple) else (column,)


def _holds(constraint: Constraint, row: Mapping[str, Any]) -> bool:
    op, column, value = constraint
    if op == "contains":
        return any(
            isinstance(row.get(c), str) and value in fold(row[c]) if c in row else True
            for c in column
        )
    if column not in row:
        return True  # (not known: it may)
    found = row[column]
    if found is None:
        return False  # (SQL: NULL matches no comparison)
    if op == "in":
        return bool(found in value)
    if op == "not in":
        return found not in value
    if op == "nocase":
        return isinstance(found, str) and fold(found) == value
    try:
        if op == ">=":
            return bool(found >= value)
        if op == "<":
            return bool(found < value)
    except TypeError:
        return True
    return True


@dataclass(frozen=True, slots=True)
class Membership:
    """Which rows of ``table`` a list holds: every constraint; ``exact``
    when they are the whole of its filters (nothing unknown); ``order``:
    the columns its order depends on (empty for a count; None: more than
    the table's own columns)."""

    table: str
    constraints: tuple[Constraint, ...]
    exact: bool
    order: frozenset[str] | None = frozenset()

    def ordered_by(self, order: frozenset[str] | None) -> Membership:
        """The same rows, ordered by ``order`` too."""
        if self.order is None or order is None:
            return Membership(self.table, self.constraints, self.exact, None)
        return Membership(self.table, self.constraints, self.exact, self.order | order)

    def holds(self, row: Mapping[str, Any] | None) -> bool:
        return row is not None and all(_holds(c, row) for c in self.constraints)

    def decides(self, row: Mapping[str, Any] | None) -> bool:
        """Whether :meth:`holds` says exactly if the list holds ``row``."""
        return self.exact and (
            row is None or all(name in row for c in self.constraints for name in _columns(c))
        )

    def may_hold(self, change: Changed) -> bool:
        """Whether the list may have held the row before or after ``change``."""
        if change.before is None and change.after is None:
            return True  # (what changed is not known)
        return self.holds(change.before) or self.holds(change.after)

    def keeps(self, change: Changed) -> bool:
        """Whether the list holds the same rows in the same order after
        ``change`` (the row itself may read otherwise: its ref says)."""
        before, after = change.before, change.after
        if before is None or after is None or not (self.decides(before) and self.decides(after)):
            return False
        held = self.holds(after)
        if held != self.holds(before):
            return False
        if not held:
            return True
        return self.order is not None and all(before.get(c) == after.get(c) for c in self.order)


# -- changes -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Changed:
    """One row of the change log, as a reader sees it."""

    seq: int
    table: str
    id: int
    op: str
    #: The table's column values before and after (None: the object was
    #: not there; both None: not known).
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    deps: frozenset[Dep]

    @classmethod
    def of(
        cls,
        seq: int,
        table: str,
        obj_id: int,
        op: str,
        project: int | None,
        parent: int | None,
        keys: list[str] | None,
        cols: dict[str, Any] | None,
        was: dict[str, Any] | None,
    ) -> Changed:
        before = after = None
        if cols is not None:
            if op == "deleted":
                before = cols
            elif op == "created":
                after = cols
            else:
                after, before = cols, {**cols, **(was or {})}
        deps = reached(table, obj_id, op, project, parent, keys, was)
        return cls(seq, table, obj_id, op, before, after, deps)


@cache
def _resource_of(table: str) -> Resource | None:
    """The resource stored in ``table`` (None: a table of no resource)."""
    return next((r for r in RESOURCES.values() if r.table == table), None)


@cache
def _shown_keys(table: str) -> frozenset[str]:
    """The stored keys an object of ``table`` shows when embedded in another."""
    res = _resource_of(table)
    if res is None:
        return frozenset()
    fields = res.embedded or (*res.fields, *res.detail_fields)
    return frozenset(getattr(f, "key", None) or f.name for f in fields)


@cache
def _scope_columns(table: str) -> tuple[str | None, str | None]:
    res = _resource_of(table)
    return (None, None) if res is None else res.scope_columns


def reached(
    table: str,
    obj_id: int,
    op: str,
    project: int | None,
    parent: int | None,
    keys: list[str] | None,
    was: dict[str, Any] | None = None,
) -> frozenset[Dep]:
    """What one row of the change log reaches (see the module's docstring)."""
    deps: set[Dep] = {ANYTHING, ("ref", table, obj_id), ("scope", table, "*")}
    deps.add(("list", table, "*"))
    project_column, parent_column = _scope_columns(table)
    projects = {project}
    parents = {parent}
    if was:  # (it moved: the lists it left too)
        projects.add(was.get(project_column or "", project))
        parents.add(was.get(parent_column or "", parent))
    deps.update(("list", table, "project", p) for p in projects if p is not None)
    deps.update(("list", table, "parent", p) for p in parents if p is not None)
    if op == "deleted" or (op == "changed" and (keys is None or _shown_keys(table) & set(keys))):
        deps.add(("embed", table))
    return frozenset(deps)


# -- the caches -----------------------------------------------------------------------------


def _merged(members: dict[str, Membership | None], member: Membership) -> Membership | None:
    """What an entry's lists of one table hold: the count and the page of
    one list are one list; two lists, and neither says it alone (None)."""
    if member.table not in members:
        return member
    known = members[member.table]
    if known is None or (known.constraints, known.exact) != (member.constraints, member.exact):
        return None
    return known.ordered_by(member.order)


#: Entries gone whose index entries one put removes (more are put than
#: dropped, over time: the backlog drains).
UNINDEX_PER_PUT = 2
#: Entries gone at most before their index entries are removed at once
#: (half of them; also when what they hold passes one entry's share).
MAX_GONE = 20_000

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
A = TypeVar("A", bound=Hashable)


def _unlisted(index: dict[A, set[K]], at: A, key: K) -> bool:
    """``key`` out of ``index[at]`` (the set gone once empty); whether
    ``index`` is empty now."""
    keys = index.get(at)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[at]
    return not index


#: Revises a kept value for changes to rows its list may hold: the new
#: value and the bytes it takes more (or fewer), or None (drop it).
Revise = Callable[[V, Membership, list[Changed]], tuple[V, int] | None]


class DependentCache(Generic[K, V]):
    """A byte-bounded LRU cache whose entries remember what they were built
    from, so that a change drops exactly those it reaches.

    Entries built from lists are indexed by the list's scope and then by
    what the list holds (its membership): the hundreds of cached pages of
    one list share one membership, so a change is weighed once per list,
    not once per page (on the event loop, with a hundred thousand answers
    cached, per page took a fifth of a second a change).
    """

    def __init__(self, max_bytes: int, max_share: int = 8, notes: bool = True) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._max_entry = max_bytes // max_share
        #: A hit notes what the entry was built from (into what is being
        #: built from it): for caches of parts of answers.
        self._notes = notes
        #: key -> (value, cost, deps, the memberships of its lists by table)
        self._data: OrderedDict[K, tuple[V, int, frozenset[Dep], dict[str, Membership | None]]] = (
            OrderedDict()
        )
        #: Entries by what they depend on; for lists, by scope, then membership.
        self._by_dep: dict[Dep, set[K]] = {}
        self._by_list: dict[Dep, dict[Membership | None, set[K]]] = {}
        #: Entries gone whose index entries are yet to be removed, a few at
        #: each put: a change dropping hundreds of answers at once would
        #: otherwise spend a few dozen index updates on each (about 25 µs)
        #: on the event loop before any request waiting is served.
        self._gone: deque[tuple[K, frozenset[Dep], dict[str, Membership | None]]] = deque()
        #: What they hold (their dependencies), bounded like one entry.
        self.backlog_bytes = 0
        #: Look-ups that found an entry, and that did not.
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V | None:
        entry = self._data.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._data.move_to_end(key)
        if self._notes:
            note_all(entry[2])
        return entry[0]

    def entry_deps(self, key: K) -> frozenset[Dep] | None:
        """What the entry under ``key`` was built from (None: no entry)."""
        entry = self._data.get(key)
        return None if entry is None else entry[2]

    def put(self, key: K, value: V, cost: int, deps: Iterable[Dep]) -> None:
        """Keep ``value`` (``cost`` bytes, its dependencies' added)."""
        kept = frozenset(deps)
        members: dict[str, Membership | None] = {}
        for dep in kept:
            if dep[0] == "member":
                members[dep[1].table] = _merged(members, dep[1])
        cost += DEP_COST * len(kept)
        self.discard(key)
        self._unindex(UNINDEX_PER_PUT)
        if not self.max_bytes or cost > self._max_entry:
            return
        while self.bytes + cost > self.max_bytes and self._data:
            self.discard(next(iter(self._data)))
        self._data[key] = (value, cost, kept, members)
        self.bytes += cost
        for dep in kept:
            if dep[0] == "list":
                groups = self._by_list.setdefault(dep, {})
                groups.setdefault(members.get(dep[1]), set()).add(key)
            elif dep[0] != "member":
                self._by_dep.setdefault(dep, set()).add(key)

    def discard(self, key: K) -> None:
        entry = self._data.pop(key, None)
        if entry is None:
            return
        self.bytes -= entry[1]
        self._gone.append((key, entry[2], entry[3]))
        self.backlog_bytes += DEP_COST * len(entry[2])
        if len(self._gone) > MAX_GONE or self.backlog_bytes > self._max_entry:
            self._unindex(len(self._gone) - len(self._gone) // 2)

    def _unindex(self, n: int) -> None:
        """Remove the index entries of ``n`` entries gone (but those the
        entry now under the same key has again)."""
        for _ in range(min(n, len(self._gone))):
            key, deps, members = self._gone.popleft()
            self.backlog_bytes -= DEP_COST * len(deps)
            current = self._data.get(key)
            live, live_members = (current[2], current[3]) if current is not None else ((), {})
            for dep in deps:
                if dep[0] == "list":
                    member = members.get(dep[1])
                    if dep not in live or live_members.get(dep[1]) != member:
                        groups = self._by_list.get(dep)
                        if groups is not None and _unlisted(groups, member, key):
                            del self._by_list[dep]
                elif dep not in live:
                    _unlisted(self._by_dep, dep, key)

    def apply(self, changes: list[Changed], revise: Revise[V] | None = None) -> int:
        """Drop what ``changes`` reach, but keep a list that held none of
        the rows changed, and ``revise`` one that did where it can; how
        many entries went."""
        dropped: set[K] = set()
        #: The changes each list must be revised by, in order.
        revising: dict[K, list[Changed]] = {}
        for change in changes:
            for dep in change.deps:
                keys = self._by_dep.get(dep)
                if keys:
                    dropped.update(keys)
                groups = self._by_list.get(dep)
                if not groups:
                    continue
                for member, listed in groups.items():
                    if member is not None and (not member.may_hold(change) or member.keeps(change)):
                        continue  # (it holds the same rows, in the same order)
                    if revise is None or member is None or member.table != change.table:
                        dropped.update(listed)
                        continue
                    for key in listed:
                        reaching = revising.setdefault(key, [])
                        if not reaching or reaching[-1] is not change:
                            reaching.append(change)
        for key, held in revising.items():
            entry = self._data.get(key)
            if key in dropped or entry is None:
                continue  # (or gone, its index entries still there)
            value, _, _, members = entry
            member = members.get(held[0].table)
            if member is None or any(c.table != member.table for c in held):
                dropped.add(key)
                continue
            revised = revise(value, member, held) if revise is not None else None
            if revised is None:
                dropped.add(key)
            else:
                self._replace(key, *revised)
        kept = len(self._data)
        for key in dropped:
            self.discard(key)
        return kept - len(self._data)

    def _replace(self, key: K, value: V, grown: int) -> None:
        _, cost, deps, members = self._data[key]
        self._data[key] = (value, cost + grown, deps, members)
        self.bytes += grown

    def clear(self) -> None:
        self._data.clear()
        self._by_dep.clear()
        self._by_list.clear()
        self._gone.clear()
        self.backlog_bytes = 0
        self.bytes = 0


def followed(value: V, deps: Iterable[Dep], changes: list[Changed], revise: Revise[V]) -> V | None:
    """What :meth:`DependentCache.apply` makes of one entry built from
    ``deps``: its value revised by ``changes``, or None where it would be
    dropped."""
    one: DependentCache[int, V] = DependentCache(max_bytes=1 << 62, max_share=1, notes=False)
    one.put(0, value, 0, deps)
    one.apply(changes, revise)
    return one.get(0)
