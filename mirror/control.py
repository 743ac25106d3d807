"""The sync worker's status and the webhook queue, beside the mirror.

They live in a small SQLite file of their own (``<mirror>-control``) so
that a heartbeat or a received webhook never writes the mirror: the
server drops its caches only when mirrored data changes.  Both the sync
worker and the server open it; every operation is one short statement.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from pathlib import Path
from typing import IO, Any

import orjson

from mirror.files import create_private

#: Webhook deliveries remembered to recognise replays (the oldest go first).
MAX_DELIVERIES = 10_000
#: Largest webhook body accepted and stored.
MAX_BODY = 1 << 20
#: Bytes of deliveries waiting for the worker; beyond, new ones are refused
#: (503) until it catches up.  A handled delivery keeps only its key.
MAX_PENDING_BYTES = 32 << 20
#: Seconds a starting worker retries a held lock before it gives up.
CLAIM_PATIENCE = 0.5


def control_path(mirror: Path) -> Path:
    return mirror.with_name(mirror.name + "-control")


class Busy(RuntimeError):
    """Another sync worker already writes this mirror."""


def lock_path(mirror: Path) -> Path:
    return mirror.with_name(mirror.name + "-sync.lock")


def claim(mirror: Path) -> IO[str]:
    """Become the one sync worker of ``mirror`` until the returned file closes.

    Two workers would both be correct (every write is an upsert) but twice
    the load upstream; the lock goes with the process, however it ends.
    """
    path = lock_path(mirror)
    create_private(path)
    lock = path.open("a+")
    deadline = time.monotonic() + CLAIM_PATIENCE
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:  # (held a moment by sync_running, say)
                time.sleep(0.05)
                continue
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise Busy(f"a sync worker ({holder}) already keeps {mirror} in sync") from None
    lock.truncate(0)
    lock.write(f"pid {os.getpid()}")
    lock.flush()
    return lock


def sync_running(mirror: Path) -> bool:
    """Whether a sync worker holds ``mirror``'s lock now (the control file's
    state may be the last words of one that died)."""
    try:
        lock = lock_path(mirror).open("r")
    except FileNotFoundError:
        return False
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
    return False


class Control:
    def __init__(self, mirror: Path) -> None:
        self.path = control_path(mirror)
        create_private(self.path)
        self._conn = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=2.0
        )
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS status (key TEXT PRIMARY KEY, value TEXT)")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS webhooks (seq INTEGER PRIMARY KEY, "
            "delivery TEXT UNIQUE NOT NULL, received REAL NOT NULL, body BLOB NOT NULL, "
            "done INTEGER NOT NULL DEFAULT 0)"
        )

    def close(self) -> None:
        self._conn.close()

    # -- status ----------------------------------------------------------------

    def set_status(self, **values: Any) -> None:
        """Record status values (JSON-encoded), in one transaction.

        Best effort: a full disk must not stop the sync from retrying.
        """
        rows = [(key, orjson.dumps(value).decode()) for key, value in values.items()]
        with contextlib.suppress(sqlite3.Error), self._conn:
            self._conn.executemany(
                "INSERT INTO status (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                rows,
            )

    def status(self) -> dict[str, Any]:
        rows = self._conn.execute("SELECT key, value FROM status").fetchall()
        return {key: orjson.loads(value) for key, value in rows}

    # -- webhooks --------------------------------------------------------------

    def enqueue_webhook(self, delivery: str, body: bytes) -> bool | None:
        """Queue a verified delivery: ``False`` if seen before (a replay),
        ``None`` if too much is already waiting."""
        try:
            with self._conn:
                (pending,) = self._conn.execute(
                    "SELECT total(length(body)) FROM webhooks WHERE NOT done"
                ).fetchone()
                if pending + len(body) > MAX_PENDING_BYTES:
                    known = self._conn.execute(
                        "SELECT 1 FROM webhooks WHERE delivery = ?", (delivery,)
                    ).fetchone()
                    return False if known else None
                self._conn.execute(
                    "INSERT INTO webhooks (delivery, received, body) VALUES (?, ?, ?)",
                    (delivery, time.time(), body),
                )
                self._conn.execute(
                    "DELETE FROM webhooks WHERE seq <= (SELECT max(seq) FROM webhooks) - ?",
                    (MAX_DELIVERIES,),
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def pending_webhooks(self) -> list[tuple[int, bytes]]:
        return [
            (seq, bytes(body))
            for seq, body in self._conn.execute(
                "SELECT seq, body FROM webhooks WHERE NOT done ORDER BY seq LIMIT 100"
            )
        ]

    def webhooks_done(self, seqs: list[int]) -> None:
        if seqs:
            with self._conn:
                self._conn.executemany(
                    "UPDATE webhooks SET done = 1, body = x'' WHERE seq = ?", [(s,) for s in seqs]
                )
