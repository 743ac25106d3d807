"""Writing normalised documents into the mirror.

Writers hand over a :class:`Batch` of document fragments per resource; the
store merges each fragment into the stored document (an embedded copy of
an object carries only some of its keys, so it must not erase the rest),
recomputes the query columns from the merged document and writes
everything in one transaction.  A crash therefore loses at most the batch
in flight, never leaves half of one.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, NamedTuple

import aiosqlite
import orjson

from mirror.model import IdOf, Resource
from mirror.resources import RESOURCES

#: Meta key: the lists upstream refuses to the sync identity (a JSON list);
#: the server forwards reads of them, since the mirror cannot answer them.
REFUSED = "sync.refused"
#: Meta keys whose values the server's answers show (the 404 page, what is
#: forwarded): a change to one is logged as a change of everything.
ANSWERED_META = frozenset(("upstream.404", REFUSED))
#: Meta key: the last change log ``seq`` trimmed away (see trim_changes).
CHANGES_LOW = "changes.low"
#: How long, and how many, changes the log keeps by default.
CHANGES_DAYS = 7.0
CHANGES_ROWS = 1_000_000
#: Resource names of the log's rows for what is not one object: every
#: answer may show it (the states' names, an answered meta value).
EVERYTHING = "*"


class Batch:
    """Document fragments to write together, merged per object."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
        #: Sync progress marks committed together with the documents.
        self.marks: list[tuple[str, int]] = []
        #: Objects upstream no longer has: (resource, id).
        self.deletions: list[tuple[str, int]] = []
        #: Complete child lists: (child resource, parent id, child ids);
        #: children of that parent not listed are gone upstream.
        self.children: list[tuple[str, int, list[int]]] = []
        #: Meta values (the event cursor...) committed with the documents.
        self.meta: dict[str, str] = {}
        #: Bundle id -> its patch ids in upstream's order (its mbox's).
        self.bundle_orders: dict[int, list[int]] = {}
        #: When each document was read upstream (wall clock, seconds).
        self.read_at: dict[tuple[str, int], float] = {}

    def add(self, resource: str, doc: dict[str, Any], read_at: float | None = None) -> None:
        """Merge ``doc`` in; ``read_at``: when upstream said so (default: now)."""
        existing = self.docs[resource].get(doc["id"])
        if existing is None:
            self.docs[resource][doc["id"]] = doc
        else:
            existing.update(doc)
        self.read_at[(resource, doc["id"])] = time.time() if read_at is None else read_at

    def extend(self, other: Batch) -> None:
        for resource, docs in other.docs.items():
            for doc in docs.values():
                self.add(resource, doc, other.read_at.get((resource, doc["id"])))
        self.marks.extend(other.marks)
        self.deletions.extend(other.deletions)
        self.children.extend(other.children)
        self.meta.update(other.meta)
        self.bundle_orders.update(other.bundle_orders)

    def __len__(self) -> int:
        return sum(len(v) for v in self.docs.values()) + len(self.deletions)

    def __bool__(self) -> bool:
        return bool(
            self.docs
            or self.marks
            or self.deletions
            or self.children
            or self.meta
            or self.bundle_orders
        )


Lookups = dict[IdOf, dict[Any, int]]


def _columns(res: Resource, doc: dict[str, Any], lookups: Lookups) -> list[Any]:
    values = []
    for col in res.columns:
        src = col.source
        if isinstance(src, str):
            values.append(doc.get(src))
        elif isinstance(src, IdOf):
            values.append(lookups[src].get(doc.get(src.key)))
        else:
            values.append(src(doc))
    return values


async def _lookups(db: aiosqlite.Connection, res: Resource) -> Lookups:
    """The (small) tables ``IdOf`` columns of ``res`` resolve against."""
    found: Lookups = {}
    for col in res.columns:
        if isinstance(col.source, IdOf):
            src = col.source
            rows = await db.execute_fetchall(f"SELECT {src.column}, id FROM {src.table}")
            found[src] = {value: row_id for value, row_id in rows}
    return found


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def state_name(slug: str) -> str:
    """The name a state is matched by, when upstream shows only its slug."""
    return slug.replace("-", " ")


async def _ensure_states(db: aiosqlite.Connection, slugs: Iterable[str]) -> int:
    """Learn states upstream uses that are not Patchwork's defaults; how many."""
    wanted = set(slugs)
    if not wanted:
        return 0
    marks = ",".join("?" * len(wanted))
    rows = await db.execute_fetchall(
        f"SELECT slug FROM states WHERE slug IN ({marks})", tuple(wanted)
    )
    missing = wanted - {r[0] for r in rows}
    for slug in sorted(missing):
        await db.execute(
            "INSERT INTO states (id, slug, name, ordering) VALUES ("
            "(SELECT coalesce(max(id), 0) + 1 FROM states), ?, ?, "
            "(SELECT coalesce(max(ordering), -1) + 1 FROM states))",
            (slug, state_name(slug)),
        )
    if missing:  # (a state filter may name one now)
        await _log(db, [_everything("states")])
    return len(missing)


async def states_in_use(db: aiosqlite.Connection) -> set[str]:
    rows = await db.execute_fetchall(
        "SELECT slug FROM states WHERE id IN "
        f"(SELECT DISTINCT state_id FROM {RESOURCES['patches'].table})"
    )
    return {r[0] for r in rows}


async def states(db: aiosqlite.Connection) -> dict[str, str]:
    """slug -> name of the states the mirror knows."""
    rows = await db.execute_fetchall("SELECT slug, name FROM states")
    return {slug: name for slug, name in rows}


async def set_states(
    db: aiosqlite.Connection, learnt: list[tuple[int, str, str, int]], in_use: set[str]
) -> bool:
    """Make the states exactly ``learnt`` (id, slug, name, ordering).

    Patches refer to states by id, so moved ids are renumbered in the same
    transaction; a state patches are in (``in_use``, as
    :func:`states_in_use` gives) that ``learnt`` lacks is kept, past every
    learnt id and ordering.  Whether anything changed.
    """
    patches = RESOURCES["patches"].table
    rows = await db.execute_fetchall("SELECT id, slug, name, ordering FROM states ORDER BY id")
    old = {slug: (state_id, slug, name, ordering) for state_id, slug, name, ordering in rows}
    new = {slug: (state_id, slug, name, ordering) for state_id, slug, name, ordering in learnt}
    next_id = max((s[0] for s in new.values()), default=0) + 1
    next_order = max((s[3] for s in new.values()), default=-1) + 1
    for slug in sorted(in_use - set(new)):
        new[slug] = (next_id, slug, old[slug][2], next_order)
        next_id, next_order = next_id + 1, next_order + 1
    if new == old:
        return False
    moved = {old[slug][0]: new[slug][0] for slug in in_use if old[slug][0] != new[slug][0]}
    await db.execute("BEGIN IMMEDIATE")
    try:
        if moved:
            cases = " ".join(f"WHEN {int(was)} THEN {int(now)}" for was, now in moved.items())
            listed = ",".join(str(int(was)) for was in moved)
            await db.execute(
                f"UPDATE {patches} SET state_id = CASE state_id {cases} END "
                f"WHERE state_id IN ({listed})"
            )
        await db.execute("DELETE FROM states")
        await db.executemany(
            "INSERT INTO states (id, slug, name, ordering) VALUES (?, ?, ?, ?)", list(new.values())
        )
        # (Every patch's state, and how a list is ordered by it, may read otherwise.)
        await _log(db, [_everything("states")])
    except BaseException:
        await _rollback(db)
        raise
    await db.execute("COMMIT")
    return True


class Change(NamedTuple):
    """One row of the change log (see mirror.schema.CHANGES)."""

    resource: str
    id: int
    op: str
    project: int | None = None
    parent: int | None = None
    keys: list[str] | None = None
    #: The table's column values after the change (before, for a deletion).
    cols: dict[str, Any] | None = None
    #: The previous values of the columns that changed.
    was: dict[str, Any] | None = None


def _everything(key: str) -> Change:
    """A change of what every answer shows (states, answered meta values)."""
    return Change(EVERYTHING, 0, "changed", keys=[key])


async def _log(db: aiosqlite.Connection, changes: list[Change]) -> None:
    """Append ``changes`` to the change log (in the caller's transaction)."""
    if changes:
        now = time.time()
        await db.executemany(
            "INSERT INTO changes (at, resource, id, op, project_id, parent_id, keys, cols, was) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    now,
                    c.resource,
                    c.id,
                    c.op,
                    c.project,
                    c.parent,
                    None if c.keys is None else _dumps(c.keys),
                    None if c.cols is None else _dumps(c.cols),
                    None if c.was is None else _dumps(c.was),
                )
                for c in changes
            ],
        )


async def trim_changes(
    db: aiosqlite.Connection, days: float = CHANGES_DAYS, rows: int = CHANGES_ROWS
) -> int:
    """Drop the changes older than ``days`` or beyond the newest ``rows``,
    recording the last one dropped (``changes.low``): a reader behind it
    knows it has missed some.  How many went."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        found = list(
            await db.execute_fetchall(
                "SELECT max(seq) FROM changes WHERE at < ? OR seq <= "
                "(SELECT coalesce(max(seq), 0) FROM changes) - ?",
                (time.time() - days * 86400, rows),
            )
        )
        last = found[0][0] if found else None
        gone = 0
        if last is not None:
            cursor = await db.execute("DELETE FROM changes WHERE seq <= ?", (last,))
            gone = max(cursor.rowcount, 0)
            await db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                "DO UPDATE SET value = excluded.value",
                (CHANGES_LOW, str(last)),
            )
    except BaseException:
        await _rollback(db)
        raise
    await db.execute("COMMIT")
    return gone


async def write(db: aiosqlite.Connection, batch: Batch) -> int:
    """Merge ``batch`` into the mirror in one transaction; how many objects changed.

    Only what differs from the mirror is written: a batch that brings
    nothing new commits nothing, so readers keep their caches (SQLite's
    ``data_version`` stays put).  Meta values and marks commit with it.
    """
    if not batch:
        return 0
    changed = 0
    await db.execute("BEGIN IMMEDIATE")
    try:
        for name, docs in batch.docs.items():
            res = RESOURCES[name]
            if name == "patches":
                slugs = (d["state"] for d in docs.values() if isinstance(d.get("state"), str))
                changed += await _ensure_states(db, slugs)
            changed += await _merge(db, res, docs, batch.read_at)
        for child, parent_id, kept in batch.children:
            changed += await _drop_children(db, RESOURCES[child], parent_id, kept)
        for resource, obj_id in batch.deletions:
            changed += await _delete(db, RESOURCES[resource], [obj_id])
        changed += await _write_bundle_orders(db, batch.bundle_orders)
        if batch.marks:
            await db.executemany(
                "INSERT OR IGNORE INTO sync_marks (kind, id) VALUES (?, ?)", batch.marks
            )
        for key, value in batch.meta.items():
            cursor = await db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                "DO UPDATE SET value = excluded.value WHERE value IS NOT excluded.value",
                (key, value),
            )
            if key in ANSWERED_META and cursor.rowcount > 0:
                await _log(db, [_everything(key)])
    except BaseException:
        await _rollback(db)
        raise
    await db.execute("COMMIT")
    return changed


def merged(
    res: Resource, fragment: dict[str, Any], old_doc: str | None, old_detail: str | None
) -> tuple[str, str | None]:
    """A stored object with ``fragment`` merged in, as (doc, detail) JSON.

    Unchanged keys keep their place, so an object that did not change
    serialises to exactly the text already stored.
    """
    doc = orjson.loads(old_doc) if old_doc else {}
    detail = orjson.loads(old_detail) if old_detail else None
    detail_keys = res.detail_keys
    for key, value in fragment.items():
        if key in detail_keys:
            if detail is None:
                detail = {}
            detail[key] = value
        else:
            doc[key] = value
    return _dumps(doc), None if detail is None else _dumps(detail)


async def _merge(
    db: aiosqlite.Connection,
    res: Resource,
    docs: dict[int, dict[str, Any]],
    read_at: dict[tuple[str, int], float],
) -> int:
    """Write what changed; never a reading older than the one stored.

    The sync and the server (reading back a write) may both write the
    mirror: whichever commits last must not undo a newer reading.
    """
    ids = list(docs)
    project_col, parent_col = res.scope_columns
    column_names = [c.name for c in res.columns]
    existing: dict[int, tuple[Any, ...]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = await db.execute_fetchall(
            f"SELECT id, doc, detail, synced, {', '.join(column_names)} FROM {res.table} "
            f"WHERE id IN ({marks})",
            chunk,
        )
        existing.update({r[0]: tuple(r[1:]) for r in rows})

    lookups = await _lookups(db, res)
    now = time.time()
    rows_out = []
    changes: list[Change] = []
    names = ["id", *(c.name for c in res.columns), "doc", "detail", "synced"]
    for obj_id, fragment in docs.items():
        old = existing.get(obj_id)
        old_doc, old_detail, synced = old[:3] if old else (None, None, 0.0)
        stamp = read_at.get((res.name, obj_id), now)
        if stamp < synced:
            continue  # what is stored was read later
        doc, detail = merged(res, fragment, old_doc, old_detail)
        if (doc, detail) == (old_doc, old_detail):
            continue
        columns = _columns(res, orjson.loads(doc), lookups)
        rows_out.append((obj_id, *columns, doc, detail, stamp))
        cols = {"id": obj_id, **dict(zip(column_names, columns, strict=True))}
        project = cols.get(project_col) if project_col else None
        parent = cols.get(parent_col) if parent_col else None
        if old is None:
            changes.append(Change(res.name, obj_id, "created", project, parent, cols=cols))
            continue
        keys = _changed_keys(old_doc, old_detail, doc, detail)
        was = {
            name: value
            for name, value in zip(column_names, old[3:], strict=True)
            if value != cols[name]
        }
        changes.append(Change(res.name, obj_id, "changed", project, parent, keys, cols, was))

    marks = ",".join("?" * len(names))
    await db.executemany(
        f"INSERT OR REPLACE INTO {res.table} ({','.join(names)}) VALUES ({marks})", rows_out
    )
    await _log(db, changes)
    return len(rows_out)


def _changed_keys(
    old_doc: str | None, old_detail: str | None, doc: str, detail: str | None
) -> list[str]:
    """The keys of a stored object whose values differ between two readings."""
    before = orjson.loads(old_doc) if old_doc else {}
    before.update(orjson.loads(old_detail) if old_detail else {})
    after = orjson.loads(doc)
    after.update(orjson.loads(detail) if detail else {})
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


async def _delete(db: aiosqlite.Connection, res: Resource, ids: list[int]) -> int:
    """Delete objects, and what upstream deletes with them; how many went."""
    gone = 0
    for chunk_start in range(0, len(ids), 500):
        chunk = ids[chunk_start : chunk_start + 500]
        marks = ",".join("?" * len(chunk))
        for child, column in res.cascade:
            table = RESOURCES[child].table
            rows = await db.execute_fetchall(
                f"SELECT id FROM {table} WHERE {column} IN ({marks})", chunk
            )
            gone += await _delete(db, RESOURCES[child], [r[0] for r in rows])
        project_col, parent_col = res.scope_columns
        column_names = ["id", *(c.name for c in res.columns)]
        rows = await db.execute_fetchall(
            f"SELECT {', '.join(column_names)} FROM {res.table} WHERE id IN ({marks})", chunk
        )
        gone_rows = [dict(zip(column_names, row, strict=True)) for row in rows]
        await _log(
            db,
            [
                Change(
                    res.name,
                    cols["id"],
                    "deleted",
                    cols.get(project_col) if project_col else None,
                    cols.get(parent_col) if parent_col else None,
                    cols=cols,
                )
                for cols in gone_rows
            ],
        )
        cursor = await db.execute(f"DELETE FROM {res.table} WHERE id IN ({marks})", chunk)
        gone += max(cursor.rowcount, 0)
        if res.name == "bundles":
            await db.execute(f"DELETE FROM bundle_orders WHERE bundle_id IN ({marks})", chunk)
    return gone


async def _write_bundle_orders(db: aiosqlite.Connection, orders: dict[int, list[int]]) -> int:
    """Store the orders of bundles the mirror holds; how many changed."""
    changed = 0
    for bundle_id, ids in orders.items():
        cursor = await db.execute(
            "INSERT INTO bundle_orders (bundle_id, ids) SELECT ?, ? "
            "WHERE EXISTS (SELECT 1 FROM bundles WHERE id = ?) "
            "ON CONFLICT (bundle_id) DO UPDATE SET ids = excluded.ids "
            "WHERE ids IS NOT excluded.ids",
            (bundle_id, _dumps(ids), bundle_id),
        )
        if cursor.rowcount > 0:
            changed += 1
            found = list(
                await db.execute_fetchall(
                    "SELECT project_id FROM bundles WHERE id = ?", (bundle_id,)
                )
            )
            project = found[0][0] if found else None
            await _log(db, [Change("bundles", bundle_id, "changed", project, keys=["order"])])
    return changed


async def bundle_orders(db: aiosqlite.Connection, bundle_ids: list[int]) -> dict[int, list[int]]:
    """The stored patch orders of these bundles (those that have one)."""
    found: dict[int, list[int]] = {}
    for start in range(0, len(bundle_ids), 500):
        chunk = bundle_ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = await db.execute_fetchall(
            f"SELECT bundle_id, ids FROM bundle_orders WHERE bundle_id IN ({marks})", chunk
        )
        found.update((bundle_id, orjson.loads(ids)) for bundle_id, ids in rows)
    return found


async def _drop_children(
    db: aiosqlite.Connection, res: Resource, parent_id: int, kept: list[int]
) -> int:
    assert res.parent is not None
    rows = await db.execute_fetchall(
        f"SELECT id FROM {res.table} WHERE {res.parent.column} = ?", (parent_id,)
    )
    keep = set(kept)
    return await _delete(db, res, [r[0] for r in rows if r[0] not in keep])


async def _rollback(db: aiosqlite.Connection) -> None:
    """Undo a failed batch, unless SQLite already did (a full disk, say)."""
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            await db.execute("ROLLBACK")


async def get_meta(db: aiosqlite.Connection, key: str) -> str | None:
    rows = list(await db.execute_fetchall("SELECT value FROM meta WHERE key = ?", (key,)))
    return rows[0][0] if rows else None


async def set_meta(db: aiosqlite.Connection, key: str, value: str | None) -> None:
    """Set (or with ``None`` delete) one meta value, in its own statement
    (a value answers show: in a transaction with a change of everything)."""
    answered = key in ANSWERED_META
    if answered:
        await db.execute("BEGIN IMMEDIATE")
    try:
        if value is None:
            await db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            await db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
        if answered:
            await _log(db, [_everything(key)])
    except BaseException:
        await _rollback(db)
        raise
    if answered:
        await db.execute("COMMIT")
