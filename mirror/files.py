"""Files only their owner may read: the mirror and everything beside it.

The mirror holds every user's email address and the sync identity's
private bundles, so the mirror, its control file, its lock and its backups
are created mode 0600 whatever the umask.  SQLite creates a database's
``-wal``, ``-shm`` and ``-journal`` files with the database's own mode, so
creating the database file first is enough for those.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Read and write for the owner only.
PRIVATE = 0o600


def create_private(path: str | Path) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists; whether it was
    created.  An existing file keeps its mode (its owner may have chosen it)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE)  # (the umask may have taken bits away)
    finally:
        os.close(fd)
    return True
