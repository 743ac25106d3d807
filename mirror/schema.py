"""The mirror's SQLite schema, its migrations, and how connections are opened.

Every resource table has the same layout, generated from the resource's
description: ``id`` (upstream's id), one column per filter/ordering column,
``doc`` (the stored JSON document), ``detail`` (the detail-only keys, kept
apart so list queries never read them) and ``synced`` (when the stored
reading was taken upstream, so that no writer replaces it with an older
one: see ``mirror.store``).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import sqlite3
from collections.abc import Callable
from pathlib import Path

import aiosqlite

from mirror.resources import DEFAULT_STATES, RESOURCES

#: Bump with a new entry in MIGRATIONS whenever the layout changes.
SCHEMA_VERSION = 8

#: A bundle's patch ids in upstream's order (its mbox's), which the API does
#: not show: a JSON list, written with the bundle (see ``mirror.store``).
BUNDLE_ORDERS = (
    "CREATE TABLE IF NOT EXISTS bundle_orders (bundle_id INTEGER PRIMARY KEY, ids TEXT NOT NULL)"
)

#: The change log: one row for each object whose stored representation
#: changed (created, changed, deleted), in the transaction that changed it,
#: numbered in order (``seq`` never reused).  Readers drop only the caches
#: a change can affect (mirror.reader); ``keys`` are the document's keys
#: that changed (JSON), ``project_id`` and ``parent_id`` the lists it is in
#: (after the change; before, for a deletion); ``cols`` its table's column
#: values then and ``was`` (JSON) the previous values of those that
#: changed: what a list's filters and order see, before and after.
#: Trimmed by age and rows (mirror.store.trim_changes); the meta value
#: ``changes.low`` is the last ``seq`` trimmed away.
CHANGES = (
    "CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "at REAL NOT NULL, resource TEXT NOT NULL, id INTEGER NOT NULL, op TEXT NOT NULL, "
    "project_id INTEGER, parent_id INTEGER, keys TEXT, cols TEXT, was TEXT)"
)
CHANGES_INDEX = "CREATE INDEX IF NOT EXISTS changes_at ON changes (at)"
#: Meta key: what tells this mirror's log from another's, whose ``seq``
#: may be the same numbers (a new file, a restored backup, a replica's
#: copy, which counts its own changes from there).
EPOCH = "changes.epoch"
#: The log's last ``seq`` (kept by SQLite even when the rows are gone: a
#: trimmed log, or a snapshot's, which starts empty).
LAST_SEQ = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)"


def _resource_tables() -> list[str]:
    statements = []
    for res in RESOURCES.values():
        cols = ", ".join(f"{c.name} {c.sqltype}" for c in res.columns)
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {res.table} "
            f"(id INTEGER PRIMARY KEY, {cols}, doc TEXT NOT NULL, detail TEXT, "
            "synced REAL NOT NULL DEFAULT 0)"
        )
        for col in res.columns:
            if col.index:
                statements.append(
                    f"CREATE INDEX IF NOT EXISTS {res.table}_{col.name} ON {res.table} ({col.name})"
                )
        for columns in res.indexes:
            name = "_".join(
                c.replace(" DESC", "_desc").replace(" COLLATE NOCASE", "_nocase") for c in columns
            )
            listed = ", ".join(columns)
            statements.append(
                f"CREATE INDEX IF NOT EXISTS {res.table}_{name} ON {res.table} ({listed})"
            )
    return statements


def _search_tables() -> list[tuple[str, str, str, list[str]]]:
    """Per searched table: its trigram index, how to fill it, its triggers.

    The index holds the column with ASCII letters in lower case (SQLite's
    ``lower``) and matches case-sensitively: a term in lower case then
    matches exactly the rows ``LIKE`` would, which folds ASCII only, with
    no row read to check.  It holds each object's project too, as
    ``<id>``, so that a search within a project is one query of the index.
    It keeps its own copy, so that the triggers need no old values: the
    store's ``INSERT OR REPLACE`` fires only the insert trigger, which
    replaces the row's entry.
    """
    found = []
    for res in RESOURCES.values():
        if not res.search_index:
            continue
        (column,) = res.search
        table, fts = res.table, f"{res.table}_search"
        columns, values, watched = [column], [f"lower(new.{column})"], [column]
        project = res.scope_columns[0]
        if res.search_scope and project:
            columns.append(res.search_scope)
            values.append(f"'<' || new.{project} || '>'")
            watched.append(project)
        listed = ", ".join(columns)
        replace = (
            f"DELETE FROM {fts} WHERE rowid = new.id; "
            f"INSERT INTO {fts} (rowid, {listed}) VALUES (new.id, {', '.join(values)});"
        )
        filled = ", ".join(value.replace("new.", "") for value in values)
        found.append(
            (
                fts,
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} "
                f"USING fts5({listed}, tokenize='trigram case_sensitive 1')",
                f"INSERT INTO {fts} (rowid, {listed}) SELECT id, {filled} FROM {table}",
                [
                    f"CREATE TRIGGER IF NOT EXISTS {fts}_insert AFTER INSERT ON {table} "
                    f"BEGIN {replace} END",
                    f"CREATE TRIGGER IF NOT EXISTS {fts}_update AFTER UPDATE OF "
                    f"{', '.join(watched)} ON {table} BEGIN {replace} END",
                    f"CREATE TRIGGER IF NOT EXISTS {fts}_delete AFTER DELETE ON {table} "
                    f"BEGIN DELETE FROM {fts} WHERE rowid = old.id; END",
                ],
            )
        )
    return found


def _v1(conn: sqlite3.Connection) -> None:
    for statement in _resource_tables():
        conn.execute(statement)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS states "
        "(id INTEGER PRIMARY KEY, slug TEXT UNIQUE NOT NULL, name TEXT NOT NULL, "
        "ordering INTEGER NOT NULL)"
    )
    conn.executemany(
        "INSERT OR IGNORE INTO states (id, slug, name, ordering) VALUES (?, ?, ?, ?)",
        DEFAULT_STATES,
    )
    # Small key/value facts about the mirror: upstream URL, sync progress,
    # the upstream's 404 page.
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
    # Which per-object sync steps are done (comments fetched for patch 7...),
    # so that an interrupted sync resumes where it stopped.
    conn.execute(
        "CREATE TABLE IF NOT EXISTS sync_marks "
        "(kind TEXT NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID"
    )


def _v2(conn: sqlite3.Connection) -> None:
    """Events name the comment or check they announce, so that deleting one
    deletes its events, as upstream's foreign keys do."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    for column, key in (
        ("patch_comment_id", "patch_comment"),
        ("cover_comment_id", "cover_comment"),
        ("check_id", "created_check"),
    ):
        if column not in have:
            conn.execute(f"ALTER TABLE events ADD COLUMN {column} INTEGER")
            conn.execute(f"UPDATE events SET {column} = json_extract(doc, '$.{key}')")
    _add_indexes(conn)


def _add_indexes(conn: sqlite3.Connection) -> None:
    """Create the indexes the descriptions name that the file lacks."""
    for statement in _resource_tables():
        if statement.startswith("CREATE INDEX"):
            conn.execute(statement)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema.layout'", (layout(),))


def _v3(conn: sqlite3.Connection) -> None:
    """When each stored reading was taken: the sync and the server's
    read-back after a write may both write; the newer reading wins."""
    for res in RESOURCES.values():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({res.table})")}
        if "synced" not in have:
            conn.execute(f"ALTER TABLE {res.table} ADD COLUMN synced REAL NOT NULL DEFAULT 0")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema.layout'", (layout(),))


def _v4(conn: sqlite3.Connection) -> None:
    """Indexes for speed at scale: filtered counts and orderings within a
    project, case-insensitive hash look-ups, events by project and category."""
    _add_indexes(conn)


def _v5(conn: sqlite3.Connection) -> None:
    """Trigram indexes for searches (``q``): built by :func:`_v8` now, in
    the form that replaced this one's."""


def _v8(conn: sqlite3.Connection) -> None:
    """Trigram indexes for searches (``q``) of patches, covers and series,
    in lower case and matched case-sensitively, with each object's project
    (see :func:`_search_tables`); those of :func:`_v5`, case-folding,
    needed LIKE to check every row."""
    for fts, create, fill, triggers in _search_tables():
        for event in ("insert", "update", "delete"):
            conn.execute(f"DROP TRIGGER IF EXISTS {fts}_{event}")
        conn.execute(f"DROP TABLE IF EXISTS {fts}")
        conn.execute(create)
        conn.execute(fill)
        for trigger in triggers:
            conn.execute(trigger)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema.layout'", (layout(),))


def _v6(conn: sqlite3.Connection) -> None:
    """Each bundle's patch order, so that a bundle's mbox built offline
    lists its patches as upstream's does; the sync learns them."""
    conn.execute(BUNDLE_ORDERS)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema.layout'", (layout(),))


def _v7(conn: sqlite3.Connection) -> None:
    """The change log (see :data:`CHANGES`): it starts empty, every reader
    then positioned at its end."""
    conn.execute(CHANGES)
    conn.execute(CHANGES_INDEX)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema.layout'", (layout(),))


#: MIGRATIONS[n] brings a database from user_version n to n + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8]
assert len(MIGRATIONS) == SCHEMA_VERSION


class SchemaTooNew(RuntimeError):
    """The file was written by a newer version of this program."""


class LayoutMismatch(RuntimeError):
    """The file's tables or stored documents are laid out otherwise."""


def layout() -> str:
    """A fingerprint of what the code expects of a mirror of this version.

    It covers the tables and indexes and how each resource's documents are
    stored, so that a file written by another build of the same schema
    version (during development, say) is refused rather than misread.
    A migration that changes either must also record the new fingerprint.
    """
    described = [
        (res.name, res.fields, res.detail_fields, res.embedded, res.detail_keys)
        for res in RESOURCES.values()
    ]
    text = repr((_resource_tables(), _search_tables(), described, BUNDLE_ORDERS, CHANGES))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_layout(conn: sqlite3.Connection, created: bool) -> None:
    expected = layout()
    if created:
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema.layout', ?)", (expected,))
        return
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema.layout'").fetchone()
    found = row[0] if row else "unknown"
    if found != expected:
        raise LayoutMismatch(
            f"the mirror was written by another build of this program (layout {found}, "
            f"this one expects {expected}); sync anew into another file or delete this one"
        )


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema up to date, one transaction per migration step.

    ``conn`` must be in autocommit mode (``isolation_level=None``) so that
    each step, DDL included, is one explicit transaction.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"mirror schema version {version} is newer than this program's ({SCHEMA_VERSION})"
        )
    for step in range(version, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[step](conn)
            conn.execute(f"PRAGMA user_version = {step + 1}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA foreign_keys = OFF",
    "PRAGMA cache_size = -65536",
    "PRAGMA mmap_size = 268435456",
    "PRAGMA temp_store = MEMORY",
)


def prepare(path: str | Path) -> None:
    """Create the file if needed and migrate it (synchronous, at start-up)."""
    from mirror.files import create_private

    create_private(path)  # before SQLite creates it world-readable
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA busy_timeout = 10000")
        created = conn.execute("PRAGMA user_version").fetchone()[0] == 0
        migrate(conn)
        _check_layout(conn, created)
        if conn.execute("SELECT 1 FROM meta WHERE key = ?", (EPOCH,)).fetchone() is None:
            with contextlib.suppress(sqlite3.OperationalError):  # (a read-only file)
                set_epoch(conn)
    finally:
        conn.close()


def put_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    """Set a meta value (on a plain connection, in the caller's transaction)."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def set_epoch(conn: sqlite3.Connection) -> None:
    """Give the mirror's log a new identity: old positions in it are void."""
    put_meta(conn, EPOCH, secrets.token_hex(4))


async def connect(path: str | Path) -> aiosqlite.Connection:
    """Open the mirror at ``path``, creating and migrating it if needed.

    The connection is in autocommit mode; writers wrap their batches in
    explicit transactions.
    """
    prepare(path)
    db = await aiosqlite.connect(str(path), isolation_level=None)
    try:
        for pragma in PRAGMAS:
            await db.execute(pragma)
    except BaseException:
        await db.close()
        raise
    return db
