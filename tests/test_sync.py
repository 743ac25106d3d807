"""The sync worker: a full crawl, crash safety, resumption, refresh."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mirror import schema
from mirror.resources import DEFAULT_STATES, RESOURCES
from tests.support import (
    as_written_by_schema,
    free_port,
    replay_upstream,
    run_cli,
    tokens,
    write_config,
)


def snapshot(path: Path) -> dict[str, list[tuple]]:
    """Every mirrored object, in a comparable form."""
    conn = sqlite3.connect(path)
    try:
        return {
            res.table: conn.execute(
                f"SELECT id, doc, detail FROM {res.table} ORDER BY id"
            ).fetchall()
            for res in RESOURCES.values()
        }
    finally:
        conn.close()


def _config(tmp_path: Path, upstream_url: str, **extra: str) -> tuple[Path, Path]:
    """A mirror path and a config syncing it from ``upstream_url`` as cibot."""
    storage = tmp_path / "mirror.sqlite3"
    config = write_config(
        tmp_path / "c.toml", upstream_url, storage, free_port(), token=tokens()["cibot"], **extra
    )
    return storage, config


def test_full_sync_mirrors_the_whole_crawl(deployment):
    counts = {table: len(rows) for table, rows in snapshot(deployment.storage).items()}
    assert counts == {
        "projects": 3,
        "users": 6,
        "people": 56,
        "patches": 767,
        "covers": 145,
        "series": 277,
        "bundles": 10,
        "events": 2769,
        "patch_comments": 207,
        "cover_comments": 60,
        "checks": 80,
    }
    conn = sqlite3.connect(deployment.storage)
    try:
        no_detail = conn.execute("SELECT count(*) FROM patches WHERE detail IS NULL").fetchone()
        states = conn.execute("SELECT id, slug FROM states ORDER BY id").fetchall()
    finally:
        conn.close()
    assert no_detail == (0,)
    # The instance uses Patchwork's default states, and only those.
    assert [slug for _, slug in states] == [slug for _, slug, _, _ in DEFAULT_STATES]


@pytest.mark.slow
def test_killed_sync_resumes_without_loss_or_duplicates(deployment, tmp_path):
    """SIGKILL the worker mid-crawl, run it again: same mirror as one clean run."""
    counter = [0]
    with replay_upstream(counter) as upstream:
        storage, config = _config(tmp_path, upstream.url)
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "sync", "--config", str(config), "--once"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        kill_after = deployment.upstream_requests // 2

        def killer() -> None:
            while proc.poll() is None and counter[0] < kill_after:
                time.sleep(0.005)
            proc.kill()

        threading.Thread(target=killer, daemon=True).start()
        proc.wait(120)
        assert proc.returncode != 0, "the sync finished before it could be killed"
        first = counter[0]

        counter[0] = 0
        result = run_cli("sync", "--config", str(config), "--once")
        assert result.returncode == 0, result.stderr
        resumed = counter[0]

    assert snapshot(storage) == snapshot(deployment.storage)
    # It continued rather than starting over.
    assert resumed < deployment.upstream_requests - first // 2


@pytest.mark.slow
def test_second_run_catches_up_cheaply_and_writes_nothing_new(deployment, tmp_path):
    """`sync --once` on a complete mirror reconciles it without re-crawling,
    and, upstream unchanged, leaves the mirror file exactly as it was."""
    counter = [0]
    with replay_upstream(counter) as upstream:
        storage, config = _config(tmp_path, upstream.url)
        first = run_cli("sync", "--config", str(config), "--once")
        assert first.returncode == 0, first.stderr
        crawl_requests = counter[0]
        before = hashlib.sha256(storage.read_bytes()).hexdigest()
        counter[0] = 0
        second = run_cli("sync", "--config", str(config), "--once")
        assert second.returncode == 0, second.stderr
    assert snapshot(storage) == snapshot(deployment.storage)
    assert counter[0] < crawl_requests / 3
    assert hashlib.sha256(storage.read_bytes()).hexdigest() == before


@pytest.mark.slow
def test_progress_is_logged_when_not_on_a_terminal(tmp_path):
    with replay_upstream() as upstream:
        _, config = _config(tmp_path, upstream.url, level="info")
        result = run_cli("sync", "--config", str(config), "--once")
    assert result.returncode == 0, result.stderr
    assert "patches pages: done (4)" in result.stderr
    assert "initial sync complete:" in result.stderr
    assert tokens()["cibot"] not in result.stderr


def test_refuses_a_mirror_of_another_upstream(deployment, tmp_path):
    copy = tmp_path / "copy.sqlite3"
    with sqlite3.connect(deployment.storage) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    config = write_config(tmp_path / "c.toml", "http://127.0.0.1:9", copy, free_port())
    result = run_cli("sync", "--config", str(config), "--once")
    assert result.returncode == 1
    assert "use another storage path" in result.stderr
    assert snapshot(copy) == snapshot(deployment.storage)


def test_a_version_1_mirror_is_migrated(deployment, tmp_path):
    """Schema v2 adds the columns that tie events to their comment or check."""
    copy = tmp_path / "v1.sqlite3"
    with sqlite3.connect(deployment.storage) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    columns = ("patch_comment_id", "cover_comment_id", "check_id")
    as_written_by_schema(
        copy,
        1,
        *(f"DROP INDEX events_{column}" for column in columns),
        *(f"ALTER TABLE events DROP COLUMN {column}" for column in columns),
    )

    schema.prepare(copy)

    assert snapshot(copy) == snapshot(deployment.storage)
    conn = sqlite3.connect(copy)
    try:
        announced = conn.execute(
            "SELECT count(patch_comment_id), count(cover_comment_id), count(check_id) FROM events"
        ).fetchone()
    finally:
        conn.close()
    assert announced == (222, 60, 80)
