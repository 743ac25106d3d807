"""Snapshots: a copy of the mirror a replica starts from, and installing one.

A snapshot is the mirror as of one read transaction (SQLite's online
backup, as ``backup`` takes it), with its change log emptied and the
position it stood at kept (meta ``snapshot.cursor``, and the log's
low-water mark): a replica installs it, then follows the source's change
feed from that cursor.  It is gzip-compressed, 0600, written beside its
destination and renamed into place.

The public kind holds only what anonymous callers may read: no private
bundles, no person or user that no public object names, no link from a
person to their user; what was deleted is zeroed (``secure_delete``).

Installing copies the snapshot into the mirror file with the same online
backup, as one write transaction: readers and a serving gateway see the
old mirror or the new one, never a mix, and follow it at once (the log's
low-water mark moved past them: they drop every cache).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import sqlite3
from pathlib import Path

from mirror import feed, schema
from mirror.backup import BackupError, consistent_copy
from mirror.files import create_private
from mirror.store import CHANGES_LOW

#: Meta key: where in the source's change log a snapshot stands.
CURSOR = "snapshot.cursor"
#: Meta key (a replica): the feed position it has applied.
REPLICA_CURSOR = "replica.cursor"

#: Columns naming the users and people that public objects show.
_SHOWN_USERS = (
    ("patches", "delegate_id"),
    ("checks", "user_id"),
    ("bundles", "owner_id"),
    ("events", "actor_id"),
)
_SHOWN_PEOPLE = (
    ("patches", "submitter_id"),
    ("covers", "submitter_id"),
    ("series", "submitter_id"),
    ("patch_comments", "submitter_id"),
    ("cover_comments", "submitter_id"),
)


class SnapshotError(Exception):
    """A snapshot that could not be made or installed; the message says why."""


def make(source: Path, target: Path, public: bool) -> str:
    """Write a snapshot of the mirror at ``source`` to ``target`` (gzip);
    its cursor."""
    work = target.with_name(target.name + ".db")
    partial = target.with_name(target.name + ".partial")
    try:
        consistent_copy(source, work)
        db = sqlite3.connect(work, isolation_level=None)
        try:
            db.execute("PRAGMA secure_delete = ON")  # (what goes is zeroed, not left in pages)
            db.execute("BEGIN IMMEDIATE")
            (head,) = db.execute(schema.LAST_SEQ).fetchone()
            row = db.execute("SELECT value FROM meta WHERE key = ?", (schema.EPOCH,)).fetchone()
            cursor = feed.cursor(row[0] if row else "0", head)
            db.execute("DELETE FROM changes")
            schema.put_meta(db, CHANGES_LOW, str(head))
            schema.put_meta(db, CURSOR, cursor)
            if public:
                _keep_public(db)
            db.execute("COMMIT")  # (the copy passed SQLite's check as it was made)
        finally:
            db.close()
        create_private(partial)
        with open(work, "rb") as raw, gzip.open(partial, "wb", compresslevel=1) as packed:
            shutil.copyfileobj(raw, packed, 1 << 20)
        os.replace(partial, target)
        return cursor
    except (sqlite3.Error, OSError, BackupError) as exc:
        raise SnapshotError(f"snapshot of {source}: {exc}") from None
    finally:
        for leftover in (work, partial):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)


def _keep_public(db: sqlite3.Connection) -> None:
    """Only what anonymous callers may read of the mirror."""
    db.execute(
        "DELETE FROM bundle_orders WHERE bundle_id IN (SELECT id FROM bundles WHERE public = 0)"
    )
    db.execute("DELETE FROM bundles WHERE public = 0")
    users = " UNION ".join(f"SELECT {c} FROM {t} WHERE {c} IS NOT NULL" for t, c in _SHOWN_USERS)
    db.execute(f"DELETE FROM users WHERE id NOT IN ({users})")
    people = " UNION ".join(f"SELECT {c} FROM {t} WHERE {c} IS NOT NULL" for t, c in _SHOWN_PEOPLE)
    db.execute(f"DELETE FROM people WHERE id NOT IN ({people})")
    # (Only a person's detail, for callers with credentials, names their user.)
    db.execute("UPDATE people SET doc = json_remove(doc, '$.user'), user_id = NULL")


def install(snapshot: Path, mirror: Path) -> str:
    """Install a snapshot (gzip) into ``mirror``, created if need be; the
    cursor of the source's feed to follow from."""
    unpacked = mirror.with_name(mirror.name + ".snapshot")
    try:
        create_private(unpacked)
        with gzip.open(snapshot, "rb") as packed, open(unpacked, "wb") as raw:
            shutil.copyfileobj(packed, raw, 1 << 20)
        src = sqlite3.connect(unpacked, isolation_level=None)
        try:
            cursor = _checked(src)
            schema.prepare(mirror)
            dst = sqlite3.connect(mirror, isolation_level=None, timeout=60)
            try:
                dst.execute("PRAGMA busy_timeout = 60000")
                src.backup(dst)  # one write transaction: the old mirror or the new one
                dst.execute("PRAGMA journal_mode = WAL")
                # A log of its own from here: positions in the source's are not ours.
                schema.set_epoch(dst)
                schema.put_meta(dst, REPLICA_CURSOR, cursor)
            finally:
                dst.close()
        finally:
            src.close()
        return cursor
    except (sqlite3.Error, OSError, EOFError, gzip.BadGzipFile) as exc:
        raise SnapshotError(f"installing {snapshot}: {exc}") from None
    finally:
        with contextlib.suppress(OSError):
            unpacked.unlink(missing_ok=True)


def _checked(db: sqlite3.Connection) -> str:
    """A snapshot this program can serve: its schema, layout, integrity."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version != schema.SCHEMA_VERSION:
        raise SnapshotError(f"snapshot schema {version}, this program's {schema.SCHEMA_VERSION}")
    meta = dict(db.execute("SELECT key, value FROM meta"))
    if meta.get("schema.layout") != schema.layout():
        raise SnapshotError("the snapshot was written by another build of this program")
    if not meta.get("upstream.url") or not meta.get(CURSOR):
        raise SnapshotError("not a snapshot of a mirror (no upstream, no cursor)")
    verdict = db.execute("PRAGMA integrity_check").fetchone()[0]
    if verdict != "ok":
        raise SnapshotError(f"the snapshot failed SQLite's integrity check: {verdict}")
    return str(meta[CURSOR])
