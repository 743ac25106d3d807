"""A consistent copy of the mirror, taken while it serves and syncs.

SQLite's online backup copies the database as of one read transaction: in
WAL mode that blocks neither the server's reads nor the sync worker's
writes, and the copy is the mirror as it was at one instant (objects,
events and cursor together), never a file copied while being written.
The copy is written beside its destination and renamed into place once it
passed SQLite's integrity check, so a failed backup leaves no half file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from mirror.files import create_private


class BackupError(Exception):
    """The copy could not be made, or failed its check; the message says why."""


def backup(source: Path, destination: str | Path) -> tuple[Path, int]:
    """Copy the mirror at ``source`` to ``destination`` (a file, or a folder
    to copy it into under its own name: one named with a trailing slash is
    created if it does not exist); the copy's path and size."""
    if not source.exists():
        raise BackupError(f"{source}: no mirror to back up")
    created = _make_folder(destination)
    folder = Path(destination)
    target = folder / source.name if folder.is_dir() else folder
    try:
        _check_destination(source, target)
        consistent_copy(source, target)
    except BackupError:
        if created:  # (a failed backup leaves nothing)
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return target, target.stat().st_size


def _make_folder(destination: str | Path) -> bool:
    """Create the folder a trailing slash names (a Path drops the slash);
    whether it was created."""
    if not isinstance(destination, str) or not destination.endswith(("/", os.sep)):
        return False
    folder = Path(destination)
    if folder.is_dir():
        return False
    if folder.exists():
        raise BackupError(f"{destination}: not a folder")
    if not folder.parent.is_dir():
        raise BackupError(f"{folder.parent}: no such folder")
    try:
        folder.mkdir()
    except OSError as exc:
        raise BackupError(f"{folder}: cannot create the folder: {exc.strerror}") from None
    return True


def consistent_copy(source: Path, target: Path) -> None:
    """Copy the mirror at ``source`` to ``target`` as of one instant, checked."""
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        create_private(partial)  # the copy holds what the mirror holds: 0600
        src = sqlite3.connect(source, timeout=30)
        try:
            src.execute("PRAGMA busy_timeout = 30000")
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst)  # all pages in one step: one consistent snapshot
                dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
                verdict = dst.execute("PRAGMA quick_check").fetchone()[0]
            finally:
                dst.close()
        finally:
            src.close()
        if verdict != "ok":
            raise BackupError(f"{partial}: the copy failed SQLite's check: {verdict}")
        os.replace(partial, target)
    except (sqlite3.Error, OSError) as exc:
        raise BackupError(f"backing up {source} to {target}: {exc}") from None
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)


def _check_destination(source: Path, destination: Path) -> None:
    """Only a new or regular file, and none of the mirror's own files: a
    device, or the mirror's WAL, would be destroyed by the copy."""
    mirror = source.resolve()
    target = destination.resolve()
    if target == mirror:
        raise BackupError(f"{destination}: that is the mirror itself")
    if target.parent == mirror.parent and target.name.startswith(mirror.name + "-"):
        raise BackupError(f"{destination}: that is one of the mirror's own files")
    if destination.exists() and not destination.is_file():
        raise BackupError(f"{destination}: exists and is not a regular file")
    if not target.parent.is_dir():
        raise BackupError(f"{destination.parent}: no such folder")
