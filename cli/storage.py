"""The mirror's files, as the commands find and leave them: a folder
checked before anything starts, the mirror a command uses (the demo's
without an upstream), ``backup``'s consistent copy, and no files left
behind by a start that failed."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

from cli import demo
from cli.config import Config, ConfigError
from mirror.backup import BackupError, backup
from mirror.resources import RESOURCES


def check_storage(path: Path) -> None:
    """The mirror's folder must exist and be writable (SQLite adds files)."""
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(f"[storage] path: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"[storage] path: folder {folder} is not writable")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise ConfigError(f"[storage] path: {path} is not readable and writable")


def served_mirror(config: Config) -> Path:
    """The mirror ``serve`` serves: the demo's without an upstream."""
    return config.storage.path if config.upstream.url else demo.demo_path(config.storage.path)


def copy(mirror: Path, destination: str) -> int:
    """``backup``: say where the copy went, and how big it is; the exit status."""
    try:
        made, size = backup(mirror, destination)
    except BackupError as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        return 1
    print(f"{made}: {size / 2**20:,.1f} MiB, a consistent copy of the mirror")
    return 0

    try:
        db = sqlite3.connect(mirror.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        if not db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
            return True
        for res in RESOURCES.values():
            if db.execute(f"SELECT 1 FROM {res.table} LIMIT 1").fetchone():
                return False
    except sqlite3.Error:
        return False  # (not a mirror of ours: not ours to remove)
    finally:
        db.close()
    return True
