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
ordered ids of deeply paged lists are cached, bounded in bytes.  All
caches (the response cache too, through ``on_change``) are dropped as
soon as SQLite's ``data_version`` shows that the sync worker has
written; ``generation`` tells a request that started before a drop not
to put what it read back into a cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
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

from mirror import schema
from mirror.fifo import FifoCache
from mirror.model import Doc, Ref
from mirror.query import Query

log = logging.getLogger(__name__)

#: SQLite virtual-machine steps a query may take on the event loop's thread
#: (a few hundred microseconds) before it is moved off it.
INLINE_BUDGET = 5000
_TICK = 100
#: Longest a query may run on the pool before it is stopped.
QUERY_SECONDS = 10.0
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


class Reader:
    def __init__(
        self, path: Path, *, connections: int = 3, cache_bytes: int = 128 * 1024 * 1024
    ) -> None:
        self.path = path
        self._size = connections
        self._idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all: list[aiosqlite.Connection] = []
        self._deadlines: dict[int, float] = {}
        self._waiting = 0
        self._direct: sqlite3.Connection | None = None
        # Bounded in bytes: parsed documents (a parsed document takes about
        # four times its JSON), encoded list items with their keys, counts
        # with their SQL and arguments.
        self._docs: LRUCache[Ref, tuple[Doc, int]] = LRUCache(
            maxsize=cache_bytes * 3 // 8, getsizeof=lambda entry: entry[1]
        )
        # (Documents 3/8, list items a quarter, ordered ids 3/8.)
        self._items: FifoCache[tuple[Any, ...], bytes] = FifoCache(
            cache_bytes // 4 - COUNTS_BYTES - LOOKUPS_BYTES
        )
        self._counts: LRUCache[tuple[str, tuple[Any, ...]], tuple[int, int]] = LRUCache(
            maxsize=COUNTS_BYTES, getsizeof=lambda entry: entry[1]
        )
        self._lookups: LRUCache[tuple[str, tuple[Any, ...]], tuple[list[Any], int]] = LRUCache(
            maxsize=LOOKUPS_BYTES, getsizeof=lambda entry: entry[1]
        )
        #: The ordered ids of lists paged deeply (see DEEP_OFFSET).
        self._orders: LRUCache[tuple[str, tuple[Any, ...]], tuple[array[int], int]] = LRUCache(
            maxsize=cache_bytes * 3 // 8, getsizeof=lambda entry: entry[1]
        )
        self._ordering: dict[tuple[str, tuple[Any, ...]], asyncio.Future[array[int] | None]] = {}
        #: One thread, with a connection of its own, reads ordered ids.
        self._bulk: sqlite3.Connection | None = None
        self._bulk_thread = ThreadPoolExecutor(1, thread_name_prefix="mirror-ids")
        #: Bumped whenever the caches are dropped.
        self.generation = 0
        self._listeners: list[Callable[[], None]] = []
        self._watch: asyncio.Task[None] | None = None
        self._data_version: int | None = None

    async def open(self, refresh_interval: float = 1.0) -> None:
        for _ in range(self._size):
            conn = await schema.connect(self.path)
            await conn.execute("PRAGMA mmap_size = 0")  # (see below)
            await conn.execute("PRAGMA cache_size = -8192")
            await conn.set_progress_handler(self._deadline_handler(conn), 1000)
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

    def on_change(self, listener: Callable[[], None]) -> None:
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

    def check_changes(self) -> bool:
        """Drop every cache if another process has written the mirror."""
        version = self._read_data_version()
        if version == self._data_version:
            return False
        self._data_version = version
        self.invalidate()
        return True

    def invalidate(self) -> None:
        self.generation += 1
        self._docs.clear()
        self._items.clear()
        self._counts.clear()
        self._lookups.clear()
        self._orders.clear()
        for listener in self._listeners:
            listener()

    # -- queries -------------------------------------------------------------

    def _deadline_handler(self, conn: aiosqlite.Connection) -> Callable[[], bool]:
        key = id(conn)
        return lambda: time.monotonic() > self._deadlines.get(key, float("inf"))

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query whose cost may grow with the data, off the event loop."""
        if self._idle.empty() and self._waiting >= MAX_WAITING:
            raise ReaderBusy("busy: every slow-query slot is taken")
        self._waiting += 1
        try:
            conn = await self._idle.get()
        finally:
            self._waiting -= 1
        self._deadlines[id(conn)] = time.monotonic() + QUERY_SECONDS
        try:
            return [tuple(row) for row in await conn.execute_fetchall(sql, args)]
        except sqlite3.OperationalError as exc:
            if time.monotonic() > self._deadlines[id(conn)]:
                raise QueryTooSlow(sql.split(" WHERE")[0]) from exc
            raise
        finally:
            self._deadlines.pop(id(conn), None)
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
        entry = self._lookups.get(key)
        if entry is not None:
            return entry[0]
        generation = self.generation
        rows = await self.fetch_fast(sql, args)
        if generation == self.generation and len(rows) <= 64:
            cost = len(sql) + sum(len(str(arg)) + 50 for arg in args) + 60 * len(rows)
            self._lookups[key] = (rows, cost + ENTRY_OVERHEAD)
        return rows

    def _lookup(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a primary-key look-up (cheap and bounded) on this thread."""
        assert self._direct is not None, "reader is not open"
        return self._direct.execute(sql, args).fetchall()

    async def count(self, table: str, query: Query) -> int:
        sql = f"SELECT count(*) FROM {table} AS t{query.where_sql()}"
        key = (sql, tuple(query.args))
        entry = self._counts.get(key)
        if entry is not None:
            return entry[0]
        generation = self.generation
        count = int((await self.fetch_fast(sql, query.args))[0][0])
        if generation == self.generation:
            cost = len(sql) + sum(len(str(arg)) + 50 for arg in query.args) + ENTRY_OVERHEAD
            self._counts[key] = (count, cost)
        return count

    async def page_ids(
        self, table: str, query: Query, offset: int, limit: int, count: int
    ) -> list[int]:
        """The ids of one page, in order (repeated if the ordering repeats rows).

        Sorting and skipping narrow rows, then fetching only the page's
        documents, keeps unindexed orderings cheap; deep pages are cut
        from the list's ordered ids (see DEEP_OFFSET).
        """
        sql = (
            f"SELECT t.id FROM {table} AS t {' '.join(query.joins)}"
            f"{query.where_sql()} ORDER BY {query.order_by}"
        )
        if offset >= DEEP_OFFSET and count * 4 <= self._orders.maxsize // 2:
            ids = await self._ordered_ids(sql, tuple(query.args))
            if ids is not None:
                return ids[offset : offset + limit].tolist()
        rows = await self.fetch_fast(sql + " LIMIT ? OFFSET ?", [*query.args, limit, offset])
        return [row[0] for row in rows]

    async def _ordered_ids(self, sql: str, args: tuple[Any, ...]) -> array[int] | None:
        """Every id ``sql`` yields, read once for all concurrent requests;
        ``None`` if the reading failed (the caller pages with OFFSET)."""
        key = (sql, args)
        entry = self._orders.get(key)
        if entry is not None:
            return entry[0]
        pending = self._ordering.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        if len(self._ordering) >= MAX_ORDERING:
            return None  # the ids thread is busy: page with OFFSET meanwhile
        loop = asyncio.get_running_loop()
        future: asyncio.Future[array[int] | None] = loop.create_future()
        self._ordering[key] = future
        generation = self.generation
        ids: array[int] | None = None
        try:
            ids = await loop.run_in_executor(self._bulk_thread, self._read_ids, sql, args)
            if generation == self.generation:
                cost = ids.itemsize * len(ids) + len(sql) + ENTRY_OVERHEAD
                self._orders[key] = (ids, cost)
        except (sqlite3.Error, QueryTooSlow) as exc:
            log.warning("could not read the ordered ids of a list: %s", exc)
        finally:
            del self._ordering[key]
            future.set_result(ids)
        return ids

    def _read_ids(self, sql: str, args: tuple[Any, ...]) -> array[int]:
        """(In the ids thread.)  Streamed into an array: 4 bytes an id (8 past
        2**31), six million ids in the default budget."""
        conn = self._bulk
        assert conn is not None
        deadline = time.monotonic() + QUERY_SECONDS
        conn.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
        try:
            ids = array("i")
            for (obj_id,) in conn.execute(sql, args):
                if ids.typecode == "i" and not -(2**31) <= obj_id < 2**31:
                    ids = array("q", ids)
                ids.append(obj_id)
            return ids
        except sqlite3.OperationalError as exc:
            if time.monotonic() > deadline:
                raise QueryTooSlow(sql.split(" WHERE")[0]) from exc
            raise
        finally:
            conn.set_progress_handler(None, 0)

    def one(self, table: str, query: Query) -> Doc | None:
        """The first object matching ``query``, with its detail-only keys."""
        sql = f"SELECT t.doc, t.detail FROM {table} AS t{query.where_sql()} LIMIT 1"
        rows = self._lookup(sql, query.args)
        if not rows:
            return None
        doc = orjson.loads(rows[0][0])
        if rows[0][1]:
            doc.update(orjson.loads(rows[0][1]))
        return doc

    def exists(self, table: str, obj_id: int) -> bool:
        if not _storable(obj_id):
            return False
        return bool(self._lookup(f"SELECT 1 FROM {table} WHERE id = ?", (obj_id,)))

    def docs(self, refs: Iterable[Ref]) -> dict[Ref, Doc]:
        """The stored documents of every (table, id) in ``refs``."""
        found: dict[Ref, Doc] = {}
        missing: dict[str, set[int]] = defaultdict(set)
        for ref in refs:
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
        if selects:
            for table, obj_id, raw in self._lookup(" UNION ALL ".join(selects), args):
                doc = orjson.loads(raw)
                found[(table, obj_id)] = doc
                self._docs[(table, obj_id)] = (doc, 4 * len(raw) + ENTRY_OVERHEAD)
        return found

    def item(self, key: tuple[Any, ...]) -> bytes | None:
        """A list item encoded earlier (see gateway.api.endpoints)."""
        return self._items.get(key)

    def keep_item(self, key: tuple[Any, ...], item: bytes, generation: int) -> None:
        if generation == self.generation:
            # (The key's parts are shared by every item of a rendering.)
            self._items.put(key, item, len(item) + ENTRY_OVERHEAD)

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
        return self.one(table, Query(where=["t.id = ?"], args=[obj_id]))

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
