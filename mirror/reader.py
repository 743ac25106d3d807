"""Reading the mirror: pages, details and the objects they embed.

Most queries take tens of microseconds, less than a trip to another
thread, so they run on a connection of the event loop's own thread: every
look-up by primary key (the documents of a page, the objects they embed,
one detail), and any other query that finishes within a small budget of
SQLite steps.  A query that exceeds the budget (a deep page, a count over
a large filter) is interrupted and run again on a small pool of aiosqlite
connections, off the event loop, so one costly request never stalls the
others; there, a query still running after ``QUERY_SECONDS`` is stopped.

Parsed documents, encoded list items, counts, filter look-ups and the
ordered ids of deeply paged lists are cached, bounded in bytes.  Every
read notes what it read (mirror.dependencies), and each cached entry
keeps what it was built from.  As soon as SQLite's ``data_version``
shows that the mirror was written, the reader reads the change log from
where it last was and drops only what those changes reach (the response
cache too, through ``on_change``); behind the log's low-water mark, or
after a schema change, everything.  ``generation`` tells a request that
started before a drop not to put what it read into a cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import sys
import threading
import time
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiosqlite
import orjson
from cachetools import LRUCache

from mirror import dependencies, schema
from mirror.dependencies import Changed, Dep, DependentCache, Membership, note
from mirror.model import Doc, Ref
from mirror.query import Query
from mirror.resources import RESOURCES
from mirror.revision import (
    Counted,
    Ids,
    Ordered,
    Window,
    order_terms,
    revise_count,
    revise_order,
)
from mirror.schema import LAST_SEQ
from mirror.store import CHANGES_LOW, EVERYTHING

log = logging.getLogger(__name__)

#: SQLite virtual-machine steps a query may take on the event loop's thread
#: (a few hundred microseconds) before it is moved off it.
INLINE_BUDGET = 5000
_TICK = 100
#: Longest a query may run on the pool before it is stopped.
QUERY_SECONDS = 10.0
#: Longest the ids thread may read one list's ordered ids: a list of
#: millions read from a cold disk takes more than QUERY_SECONDS, and stopped
#: it would be read again, and stopped again, at every deep page.  (Its own
#: thread and connection: it holds up no other query.)
IDS_SECONDS = 60.0
#: Queries that may wait for a pool connection; beyond, ReaderBusy.
MAX_WAITING = 32
#: Bytes of Python objects around a cache entry, beyond its data.
ENTRY_OVERHEAD = 300
#: Bytes for cached counts (their keys hold a query's SQL).
COUNTS_BYTES = 8 << 20
#: Bytes for cached look-ups of filter values (a project's linkname...).
LOOKUPS_BYTES = 4 << 20
#: Pages starting this deep are cut from the list's ordered ids, read once
#: (per filter set and ordering) and kept, rather than skipped over with
#: OFFSET at every request: a deep page then costs what the first does.
DEEP_OFFSET = 300
#: Lists whose ordered ids may be read (or wait to be) at once.
MAX_ORDERING = 4


class QueryTooSlow(Exception):
    """A query ran past QUERY_SECONDS and was stopped."""


class ReaderBusy(Exception):
    """Too many queries wait for the pool already: retry later."""


def _storable(obj_id: int) -> bool:
    """Whether an id fits SQLite's integers (larger ones name nothing)."""
    return -(2**63) <= obj_id < 2**63


#: Changes read at once; more, and every cache is dropped instead.
MAX_CHANGES = 5000
#: The tables a look-up's SQL reads.
_TABLES = re.compile(r"\b(?:FROM|JOIN)\s+(\w+)")


def _interrupt(conn: aiosqlite.Connection) -> None:
    """Stop the query ``conn`` runs (in its own thread) now."""
    conn._conn.interrupt()  # (aiosqlite's own interrupt() would queue behind it)


def _json(raw: str | None, kind: type) -> Any:
    found = orjson.loads(raw) if raw else None
    return found if isinstance(found, kind) else None


def _list_deps(
    table: str, query: Query, order: tuple[tuple[str, bool], ...] | None = ()
) -> tuple[frozenset[Dep], Membership]:
    """What a list's count and ids depend on: its table (narrowed to a
    project or a parent where the query is) with the rows its filters
    hold and the columns it is ``order``-ed by (None: not only its own),
    and the tables it joins."""
    deps: set[Dep] = {("list", table, *scope) for scope in query.scope}
    if not deps:
        deps.add(("list", table, "*"))
    columns = None if order is None else frozenset(column for column, _ in order)
    membership = query.membership(table).ordered_by(columns)
    deps.add(("member", membership))
    for joined in _TABLES.findall(" ".join(query.joins)):
        deps.add(("scope", joined, "*"))
    return frozenset(deps), membership


def _rows(table: str, query: Query) -> tuple[str, list[Any]]:
    """The FROM and WHERE of the rows a list holds, without joins, and
    their values: the search index's ids where a search (and the project)
    alone decides them (no row of the table read to count them)."""
    alone = query.search_alone()
    if alone is not None:
        return f"({alone[0]}) AS t", alone[1]
    return f"{table} AS t{query.where_sql()}", query.args


def _own_order(query: Query) -> tuple[tuple[str, bool], ...] | None:
    """The list's ORDER BY as terms of its table's own columns (None: it
    joins another table, and cannot be revised; see mirror.revision)."""
    return order_terms(query.order_by) if not query.joins else None


def _revised_count(
    value: Counted, member: Membership, changes: list[Changed]
) -> tuple[Counted, int] | None:
    revised = revise_count(value, member, changes)
    return None if revised is None else (revised, 0)


class Reader:
    def __init__(
        self, path: Path, *, connections: int = 3, cache_bytes: int = 128 * 1024 * 1024
    ) -> None:
        self.path = path
        self._size = connections
        self._idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all: list[aiosqlite.Connection] = []
        self._waiting = 0
        self._direct: sqlite3.Connection | None = None
        # Bounded in bytes: parsed documents (a parsed document takes about
        # four times its JSON), encoded list items with their keys, counts
        # with their SQL and arguments.
        self._docs: LRUCache[Ref, tuple[Doc, int]] = LRUCache(
            maxsize=cache_bytes // 4, getsizeof=lambda entry: entry[1]
        )
        # (Documents a quarter, list items 3/8 with the counts and look-ups,
        # ordered ids 3/8.  Items are what a list's pages are made of, and
        # bytes: a page whose rows moved by one after a write is rebuilt
        # from them, not from documents parsed again.)
        self._items: DependentCache[tuple[Any, ...], bytes] = DependentCache(
            cache_bytes * 3 // 8 - COUNTS_BYTES - LOOKUPS_BYTES
        )
        self._counts: DependentCache[tuple[str, tuple[Any, ...]], Counted] = DependentCache(
            COUNTS_BYTES
        )
        self._lookups: DependentCache[tuple[str, tuple[Any, ...]], list[Any]] = DependentCache(
            LOOKUPS_BYTES
        )
        #: The ordered ids of lists paged deeply (see DEEP_OFFSET).
        # (One list may take half of it: page_ids reads no longer ones.)
        self._orders: DependentCache[tuple[str, tuple[Any, ...]], Ordered] = DependentCache(
            cache_bytes * 3 // 8, max_share=2
        )
        self._ordering: dict[tuple[str, tuple[Any, ...]], asyncio.Future[Ordered | None]] = {}
        #: One thread, with a connection of its own, reads ordered ids.
        self._bulk: sqlite3.Connection | None = None
        self._bulk_thread = ThreadPoolExecutor(1, thread_name_prefix="mirror-ids")
        #: Bumped whenever the caches are dropped.
        self.generation = 0
        self._listeners: list[Callable[[list[Changed] | None], None]] = []
        self._watch: asyncio.Task[None] | None = None
        self._data_version: int | None = None
        #: The last change log row read, and the schema version then.
        self._seq = 0
        self._schema: int | None = None

    async def open(self, refresh_interval: float = 1.0) -> None:
        for _ in range(self._size):
            conn = await schema.connect(self.path)
            await conn.execute("PRAGMA mmap_size = 0")  # (see below)
            await conn.execute("PRAGMA cache_size = -8192")
            self._all.append(conn)
            self._idle.put_nowait(conn)
        self._direct = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False
        )
        # The event loop must never wait on a lock for long.
        self._direct.execute("PRAGMA busy_timeout = 200")
        self._direct.execute("PRAGMA query_only = ON")
        # No mmap: mapped pages of a file larger than memory would count in
        # the server's resident memory; the OS page cache serves them alike.
        self._direct.execute("PRAGMA cache_size = -16384")
        self._bulk = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._bulk.execute("PRAGMA query_only = ON")
        self._data_version = self._read_data_version()
        self._seq, self._schema = self._log_position()
        self._watch = asyncio.create_task(self._watch_changes(refresh_interval))

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for conn in self._all:
            await conn.close()
        self._all.clear()
        if self._direct is not None:
            self._direct.close()
            self._direct = None
        self._bulk_thread.shutdown(wait=True)
        if self._bulk is not None:
            self._bulk.close()
            self._bulk = None

    def on_change(self, listener: Callable[[list[Changed] | None], None]) -> None:
        """Call ``listener`` with the changes read (``None``: everything
        changed) once the caches here have followed them."""
        self._listeners.append(listener)

    # -- change detection ----------------------------------------------------

    def _read_data_version(self) -> int:
        return self._lookup("PRAGMA data_version")[0][0]

    async def _watch_changes(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.check_changes()
            except Exception:  # keep watching whatever one poll hit
                log.exception("could not poll the mirror for changes")

    def _log_position(self) -> tuple[int, int]:
        """The change log's last ``seq``, and the schema version."""
        (seq,) = self._lookup(LAST_SEQ)[0]
        (version,) = self._lookup("PRAGMA user_version")[0]
        return int(seq), int(version)

    def check_changes(self) -> bool:
        """Follow the mirror's changes, if it has been written: drop or
        revise what they reach (everything, if the log cannot say)."""
        version = self._read_data_version()
        if version == self._data_version:
            return False
        self._data_version = version
        assert self._direct is not None, "reader is not open"
        # One snapshot for the changes and the rows read to revise with.
        self._direct.execute("BEGIN")
        try:
            return self._follow_changes()
        finally:
            self._direct.execute("COMMIT")

    def _follow_changes(self) -> bool:
        changes = self._changes_after(self._seq)
        if changes is None:
            # Behind what the log keeps, too much at once, a schema change,
            # or what every answer shows: everything.
            (self._schema,) = self._lookup("PRAGMA user_version")[0]
            self._seq = self._log_position()[0]
            self.invalidate()
            return True
        if not changes:
            return False  # (progress marks, the cursor: nothing an answer shows)
        self._seq = changes[-1].seq
        self.invalidate(changes)
        return True

    def _changes_after(self, seq: int) -> list[Changed] | None:
        """The log's changes after ``seq``, in this connection's snapshot;
        None when the log cannot tell them (trimmed past ``seq``, too many,
        the schema changed, or a change every answer shows)."""
        (schema_version,) = self._lookup("PRAGMA user_version")[0]
        rows = self._lookup(
            "SELECT seq, resource, id, op, project_id, parent_id, keys, cols, was FROM changes "
            f"WHERE seq > ? ORDER BY seq LIMIT {MAX_CHANGES + 1}",
            (seq,),
        )
        low = self.meta(CHANGES_LOW)
        if (
            schema_version != self._schema
            or (low is not None and int(low) > seq)
            or len(rows) > MAX_CHANGES
            or any(row[1] == EVERYTHING for row in rows)
        ):
            return None
        return [
            Changed.of(
                seq,
                RESOURCES[resource].table,
                obj_id,
                op,
                project,
                parent,
                _json(keys, list),
                _json(cols, dict),
                _json(was, dict),
            )
            for seq, resource, obj_id, op, project, parent, keys, cols, was in rows
        ]

    def _caught_up(self, ordered: Ordered, deps: frozenset[Dep]) -> Ordered | None:
        """Ordered ids read while the mirror moved on, revised by every
        change since their snapshot, as if they had been kept then; None
        when that cannot be told (they are read again at the next deep
        page).  Without this, a list whose reading takes longer than the
        time between two writes (a million events: over a second) would
        never be kept on a mirror written every second."""
        assert self._direct is not None, "reader is not open"
        self._direct.execute("BEGIN")  # (changes and the rows probed: one snapshot)
        try:
            changes = self._changes_after(ordered.seq)
            if not changes:
                return None if changes is None else ordered
            # (Revised as the cache of ordered ids revises what it keeps.)
            revised = dependencies.followed(ordered, deps, changes, self._revised_order)
            if revised is None:
                return None
            # (Its seq: the changes it has; the reader skips them when it
            # follows them.)
            return Ordered(revised.ids, changes[-1].seq, ordered.order)
        finally:
            self._direct.execute("COMMIT")

    def invalidate(self, changes: list[Changed] | None = None) -> None:
        """Follow ``changes`` (``None``: drop everything)."""
        self.generation += 1
        if changes is None:
            self._docs.clear()
            self._items.clear()
            self._counts.clear()
            self._lookups.clear()
            self._orders.clear()
        else:
            for change in changes:
                self._docs.pop((change.table, change.id), None)
            self._items.apply(changes)
            self._lookups.apply(changes)
            self._counts.apply(changes, _revised_count)
            self._orders.apply(changes, self._revised_order)
        for listener in self._listeners:
            listener(changes)

    def _revised_order(
        self, value: Ordered, member: Membership, changes: list[Changed]
    ) -> tuple[Ordered, int] | None:
        if value.order is None:
            return None
        order, table = value.order, member.table
        revised = revise_order(
            value, member, changes, lambda obj_id: self._ordering_values(table, order, obj_id)
        )
        if revised is None:
            return None
        return revised, revised.ids.nbytes - value.ids.nbytes

    def _ordering_values(
        self, table: str, order: tuple[tuple[str, bool], ...], obj_id: int
    ) -> tuple[Any, ...] | None:
        """A row's values of the columns ``order`` reads (None: no row)."""
        columns = ", ".join(column for column, _ in order)
        rows = self._lookup(f"SELECT {columns} FROM {table} WHERE id = ?", (obj_id,))
        return tuple(rows[0]) if rows else None

    def window(
        self, table: str, query: Query, ids: list[int], per_page: int, count: int
    ) -> Window | None:
        """Where a page of ``ids`` ends in its list, if it is full and its
        order is the table's own columns (see mirror.revision.Window)."""
        order = _own_order(query)
        if order is None or len(ids) != per_page:
            return None
        last = self._ordering_values(table, order, ids[-1])
        return None if last is None else Window(order, last, count, per_page)

    # -- queries -------------------------------------------------------------

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query whose cost may grow with the data, off the event loop."""
        if self._idle.empty() and self._waiting >= MAX_WAITING:
            raise ReaderBusy("busy: every slow-query slot is taken")
        self._waiting += 1
        try:
            conn = await self._idle.get()
        finally:
            self._waiting -= 1
        # Stopped from here when overdue: a progress handler would make the
        # query's thread take the GIL back from the event loop thousands of
        # times (each a wait of up to the switch interval, under load).
        # (sqlite3's interrupt() may be called from any thread.)
        overdue = time.monotonic() + QUERY_SECONDS
        deadline = asyncio.get_running_loop().call_later(QUERY_SECONDS, _interrupt, conn)
        try:
            return [tuple(row) for row in await conn.execute_fetchall(sql, args)]
        except sqlite3.OperationalError as exc:
            if time.monotonic() >= overdue:
                raise QueryTooSlow(sql.split(" WHERE")[0]) from exc
            raise
        finally:
            deadline.cancel()
            self._idle.put_nowait(conn)

    async def fetch_fast(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query here if it is cheap, else off the event loop."""
        assert self._direct is not None, "reader is not open"
        ticks = 0

        def over_budget() -> bool:
            nonlocal ticks
            ticks += 1
            return ticks > INLINE_BUDGET // _TICK

        self._direct.set_progress_handler(over_budget, _TICK)
        try:
            return self._direct.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            if ticks <= INLINE_BUDGET // _TICK:
                raise
        finally:
            self._direct.set_progress_handler(None, 0)
        return await self.fetch(sql, args)

    async def fetch_kept(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """:meth:`fetch_fast`, its (small) result kept until the mirror changes:
        the look-ups of filter values every request of a filtered list makes."""
        key = (sql, tuple(args))
        found = self._lookups.get(key)
        if found is not None:
            return found
        deps: set[Dep] = {("scope", table, "*") for table in _TABLES.findall(sql)}
        dependencies.note_all(deps)
        generation = self.generation
        rows = await self.fetch_fast(sql, args)
        if generation == self.generation and len(rows) <= 64:
            cost = len(sql) + sum(len(str(arg)) + 50 for arg in args) + 60 * len(rows)
            self._lookups.put(key, rows, cost + ENTRY_OVERHEAD, deps)
        return rows

    def _lookup(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a primary-key look-up (cheap and bounded) on this thread."""
        assert self._direct is not None, "reader is not open"
        return self._direct.execute(sql, args).fetchall()

    async def count(self, table: str, query: Query) -> int:
        sql = f"SELECT count(*) FROM {table} AS t{query.where_sql()}"
        key = (sql, tuple(query.args))
        found = self._counts.get(key)
        if found is not None:
            return found.count
        deps, _ = _list_deps(table, query)
        dependencies.note_all(deps)
        generation = self.generation
        # (The log's position in the same snapshot: the changes it has.)
        rows, args = _rows(table, query)
        counting = f"SELECT count(*), ({LAST_SEQ}) FROM {rows}"
        count, seq = (await self.fetch_fast(counting, args))[0]
        if generation == self.generation:
            cost = len(sql) + sum(len(str(arg)) + 50 for arg in query.args) + ENTRY_OVERHEAD
            self._counts.put(key, Counted(int(count), int(seq)), cost, deps)
        return int(count)

    async def page_ids(
        self, table: str, query: Query, offset: int, limit: int, count: int
    ) -> list[int]:
        """The ids of one page, in order (repeated if the ordering repeats rows).

        Sorting and skipping narrow rows, then fetching only the page's
        documents, keeps unindexed orderings cheap; deep pages are cut
        from the list's ordered ids (see DEEP_OFFSET).
        """
        order = _own_order(query)
        if order is not None and order[0][0] == "id":
            # (Ids are unique: the first term decides, whatever follows; a
            # search's ids alone come in that order.)
            rows, args = _rows(table, query)
            by = "t.id DESC" if order[0][1] else "t.id"
            # Read whole in id order, SQLite walks the table itself (every
            # document, a whole big mirror read from disk); ``+`` keeps it
            # on a narrow index and has it sort the ids (a million in half a
            # second).
            whole = "+" + by
        else:
            rows = f"{table} AS t {' '.join(query.joins)}{query.where_sql()}"
            args, by = query.args, query.order_by
            whole = by
        select = f"SELECT t.id FROM {rows} ORDER BY "
        deps, _ = _list_deps(table, query, order)
        dependencies.note_all(deps)
        if offset >= DEEP_OFFSET and count * 4 <= self._orders.max_bytes // 2 - 65536:
            ordered = await self._ordered_ids(select + whole, tuple(args), deps, order)
            if ordered is not None:
                return ordered.ids.page(offset, offset + limit)
        # (One row, one JSON array: off the event loop, a row at a time would
        # wait for the GIL after each row; see _read_ids.)
        listing = f"SELECT json_group_array(id) FROM ({select}{by} LIMIT ? OFFSET ?)"
        ((listed,),) = await self.fetch_fast(listing, [*args, limit, offset])
        return list(orjson.loads(listed))

    async def _ordered_ids(
        self,
        sql: str,
        args: tuple[Any, ...],
        deps: frozenset[Dep],
        order: tuple[tuple[str, bool], ...] | None,
    ) -> Ordered | None:
        """Every id ``sql`` yields, read once for all concurrent requests;
        ``None`` if the reading failed (the caller pages with OFFSET)."""
        key = (sql, args)
        found = self._orders.get(key)
        if found is not None:
            return found
        pending = self._ordering.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        if len(self._ordering) >= MAX_ORDERING:
            return None  # the ids thread is busy: page with OFFSET meanwhile
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Ordered | None] = loop.create_future()
        self._ordering[key] = future
        generation = self.generation
        ordered: Ordered | None = None
        try:
            ids, seq = await loop.run_in_executor(self._bulk_thread, self._read_ids, sql, args)
            ordered = Ordered(ids, seq, order)
            # (Those waiting get what was read; what is kept has every change.)
            kept = ordered if generation == self.generation else self._caught_up(ordered, deps)
            if kept is not None:
                cost = kept.ids.nbytes + len(sql) + ENTRY_OVERHEAD
                self._orders.put(key, kept, cost, deps)
        except (sqlite3.Error, QueryTooSlow) as exc:
            log.warning("could not read the ordered ids of a list: %s", exc)
        finally:
            del self._ordering[key]
            future.set_result(ordered)
        return ordered

    def _read_ids(self, sql: str, args: tuple[Any, ...]) -> tuple[Ids, int]:
        """(In the ids thread.)  Into an array: 4 bytes an id (8 past 2**31),
        six million ids in the default budget; with the change log's
        position in the same snapshot.

        SQLite builds the whole list as one string of fixed-width hex, in
        one step, which becomes the array with no Python object per id.
        Read row by row, this thread would need the GIL back after each
        row, which a busy event loop hands over only every few milliseconds
        (a million rows took minutes under load); read as a list (a JSON
        array), six million ids were 200 MB of Python objects for a moment,
        each traversed by any full garbage collection meanwhile (pauses of
        100-230 ms on the event loop).
        """
        conn = self._bulk
        assert conn is not None
        # (A subquery keeps its ORDER BY when the query around it aggregates.)
        listing = f"SELECT count(*), max(id), group_concat(printf('%08x', id), '') FROM ({sql})"
        timer = threading.Timer(IDS_SECONDS, conn.interrupt)
        timer.start()
        conn.execute("BEGIN")
        try:
            ((seq,),) = conn.execute(LAST_SEQ).fetchall()
            ((count, highest, packed),) = conn.execute(listing, args).fetchall()
            if not count:
                return Ids(array("i")), int(seq)
            if highest < 2**31 and len(packed) == 8 * count:  # (and none negative)
                ids = array("i")
                ids.frombytes(bytes.fromhex(packed))
                if sys.byteorder == "little":
                    ids.byteswap()  # (the hex is big-endian)
                return Ids(ids), int(seq)
            listing = f"SELECT json_group_array(id) FROM ({sql})"  # (ids past 2**31: rare)
            ((listed,),) = conn.execute(listing, args).fetchall()
            return Ids(array("q", orjson.loads(listed))), int(seq)
        except sqlite3.OperationalError as exc:
            if not timer.is_alive():
                raise QueryTooSlow(sql.split(" WHERE")[0]) from exc
            raise
        finally:
            timer.cancel()
            conn.execute("COMMIT")

    def one(self, table: str, query: Query, dep: Dep) -> Doc | None:
        """The first object matching ``query``, with its detail-only keys;
        ``dep``: what the answer depends on (the object looked for)."""
        note(dep)
        sql = f"SELECT t.doc, t.detail FROM {table} AS t{query.where_sql()} LIMIT 1"
        rows = self._lookup(sql, query.args)
        if not rows:
            return None
        doc = orjson.loads(rows[0][0])
        if rows[0][1]:
            doc.update(orjson.loads(rows[0][1]))
        return doc

    def exists(self, table: str, obj_id: int) -> bool:
        note(("ref", table, obj_id))
        if not _storable(obj_id):
            return False
        return bool(self._lookup(f"SELECT 1 FROM {table} WHERE id = ?", (obj_id,)))

    def docs(self, refs: Iterable[Ref], embedded: bool = False) -> dict[Ref, Doc]:
        """The stored documents of every (table, id) in ``refs``; ``embedded``:
        read to be shown inside other objects (what is noted differs)."""
        found: dict[Ref, Doc] = {}
        missing: dict[str, set[int]] = defaultdict(set)
        tables: set[str] = set()
        for ref in refs:
            if embedded:
                tables.add(ref[0])
            else:
                note(("ref", *ref))
            if ref in found or not _storable(ref[1]):
                continue
            entry = self._docs.get(ref)
            if entry is None:
                missing[ref[0]].add(ref[1])
            else:
                found[ref] = entry[0]
        # One query (SQLite is in this thread anyway) for every table.
        selects, args = [], []
        for table, ids in missing.items():
            ordered = sorted(ids)
            for start in range(0, len(ordered), 2000):
                chunk = ordered[start : start + 2000]
                marks = ",".join("?" * len(chunk))
                selects.append(f"SELECT '{table}', id, doc FROM {table} WHERE id IN ({marks})")
                args.extend(chunk)
        for table in tables:
            note(("embed", table))
        if selects:
            for table, obj_id, raw in self._lookup(" UNION ALL ".join(selects), args):
                doc = orjson.loads(raw)
                found[(table, obj_id)] = doc
                self._docs[(table, obj_id)] = (doc, 4 * len(raw) + ENTRY_OVERHEAD)
        if embedded:
            # (An object shown when it arrives: its creation reaches this.)
            for table, ids in missing.items():
                for obj_id in ids:
                    if (table, obj_id) not in found:
                        note(("ref", table, obj_id))
        return found

    def item(self, key: tuple[Any, ...]) -> bytes | None:
        """A list item encoded earlier (see gateway.api.endpoints)."""
        return self._items.get(key)

    def keep_item(
        self, key: tuple[Any, ...], item: bytes, generation: int, deps: Iterable[Dep]
    ) -> None:
        """Keep an item encoded from what ``deps`` name."""
        if generation == self.generation:
            # (The key's parts are shared by every item of a rendering.)
            self._items.put(key, item, len(item) + ENTRY_OVERHEAD, deps)

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """An indexed look-up of a few rows (downloads, redirects)."""
        return self._lookup(sql, args)

    # -- what downloads and pages read (indexed look-ups) ---------------------

    def project_named(self, linkname: str) -> Doc | None:
        rows = self._lookup("SELECT id FROM projects WHERE linkname = ?", (linkname,))
        return self.docs([("projects", rows[0][0])]).get(("projects", rows[0][0])) if rows else None

    def full(self, table: str, obj_id: int) -> Doc | None:
        """An object with its detail-only keys (headers, content, diff)."""
        if not _storable(obj_id):
            return None
        return self.one(table, Query(where=["t.id = ?"], args=[obj_id]), ("ref", table, obj_id))

    def by_msgid(self, table: str, project_id: int, url_msgid: str) -> Doc | None:
        """A patch or cover of a project by the message id in its URL, in full.

        As upstream's views read them: a patch's may have its slashes
        percent-encoded (``%2F``), a cover's are taken as they are.
        """
        if table == "patches":
            url_msgid = url_msgid.replace("%2F", "/")
        rows = self._lookup(
            f"SELECT id FROM {table} WHERE project_id = ? AND msgid = ?",
            (project_id, f"<{url_msgid}>"),
        )
        return self.full(table, rows[0][0]) if rows else None

    def children(self, table: str, column: str, parent_id: int) -> list[Doc]:
        """A patch's checks or comments, oldest first, as upstream lists them."""
        rows = self._lookup(
            f"SELECT id FROM {table} WHERE {column} = ? ORDER BY date, id", (parent_id,)
        )
        refs = [(table, row[0]) for row in rows]
        found = self.docs(refs)
        return [found[ref] for ref in refs if ref in found]

    def bundle_order(self, bundle_id: int) -> list[int]:
        """A bundle's patch ids in upstream's order, as the sync last read
        them from its mbox (empty if it has not)."""
        rows = self._lookup("SELECT ids FROM bundle_orders WHERE bundle_id = ?", (bundle_id,))
        ids = orjson.loads(rows[0][0]) if rows else []
        return [i for i in ids if type(i) is int] if isinstance(ids, list) else []

    def user_named(self, username: str) -> int | None:
        """The id of the user with this username, if the mirror has them."""
        rows = self._lookup("SELECT id FROM users WHERE username = ?", (username,))
        return int(rows[0][0]) if len(rows) == 1 else None

    def meta(self, key: str) -> str | None:
        rows = self._lookup("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None
