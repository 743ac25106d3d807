"""The mirror holds every user's email address and the sync identity's
private bundles: it, the files beside it and its backups are created for
their owner alone (0600), whatever the umask."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import demo
from mirror import schema
from mirror.backup import backup
from mirror.control import Control, claim, control_path
from mirror.files import create_private


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, which leaves new files world-readable."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def _fresh_mirror(path: Path) -> None:
    async def write() -> None:
        db = await schema.connect(path)
        try:
            await db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('k', 'v')")
            # (Open: the -wal and -shm files exist while a connection does.)
            assert _mode(path.with_name(path.name + "-wal")) == 0o600
            assert _mode(path.with_name(path.name + "-shm")) == 0o600
        finally:
            await db.close()

    asyncio.run(write())


def test_a_fresh_mirror_and_everything_beside_it_are_private(tmp_path, umask_022):
    mirror = tmp_path / "m.sqlite3"
    _fresh_mirror(mirror)
    assert _mode(mirror) == 0o600
    control = Control(mirror)
    lock = claim(mirror)
    try:
        control.set_status(state="following")
        for path in (control_path(mirror), mirror.with_name(mirror.name + "-sync.lock")):
            assert _mode(path) == 0o600, path
        for suffix in ("-wal", "-shm"):
            assert _mode(control.path.with_name(control.path.name + suffix)) == 0o600
    finally:
        lock.close()
        control.close()


def test_a_backup_is_private_too(tmp_path, umask_022):
    mirror = tmp_path / "m.sqlite3"
    _fresh_mirror(mirror)
    copy, _ = backup(mirror, tmp_path / "copy.sqlite3")
    assert _mode(copy) == 0o600
    # Replacing a world-readable file: the copy is private all the same.
    loose = tmp_path / "loose.sqlite3"
    loose.write_bytes(b"")
    loose.chmod(0o644)
    copy, _ = backup(mirror, loose)
    assert _mode(copy) == 0o600


def test_the_demo_mirror_is_private(tmp_path, umask_022):
    built = asyncio.run(demo.build(tmp_path / "m.sqlite3"))
    assert _mode(built) == 0o600


def test_an_existing_file_keeps_its_mode(tmp_path):
    chosen = tmp_path / "m.sqlite3"
    chosen.write_bytes(b"")
    chosen.chmod(0o640)  # (its owner's choice: a group that reads backups, say)
    assert create_private(chosen) is False
    assert _mode(chosen) == 0o640
    assert create_private(tmp_path / "new") is True
