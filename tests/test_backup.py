"""``patchwork-gateway backup``: a consistent copy while the gateway serves
and the mirror is being written."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from tests.support import GatewayProcess, copy_mirror, free_port, request, run_cli, write_config
from tests.test_gateway import _write

pytestmark = pytest.mark.slow

#: Pages of project 1 (the writes below rename project 2).
PAGES = (
    "/api/1.4/patches/?project=1&per_page=250",
    "/api/1.4/series/?project=1&per_page=50&page=2",
    "/api/1.1/events/?project=1&category=check-created",
    "/api/1.4/projects/1/",
)


def test_backup_while_serving_and_writing_is_consistent_and_serves_alike(deployment, tmp_path):
    mirror = copy_mirror(deployment.storage, tmp_path / "m.sqlite3")
    port = free_port()
    config = write_config(tmp_path / "c.toml", "", mirror, port)
    config.write_text(config.read_text().replace('url = ""', 'url = "http://127.0.0.1:9"'))
    stop = threading.Event()
    renames = []

    def keep_writing() -> None:  # as a sync worker would, meanwhile
        number = 0
        while not stop.is_set():
            number += 1
            asyncio.run(_write(mirror, "projects", {"id": 2, "name": f"aiohttp {number}"}))
            renames.append(number)

    with GatewayProcess(config, port) as gateway:
        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            copy = tmp_path / "backups" / "copy.sqlite3"
            copy.parent.mkdir()
            result = run_cli("backup", "--config", str(config), str(copy), timeout=120)
        finally:
            stop.set()
            writer.join()
        assert result.returncode == 0, result.stderr
        assert str(copy) in result.stdout
        assert len(renames) > 1, "the mirror was written during the backup"
        assert not list(copy.parent.glob("*.partial"))
        with sqlite3.connect(copy) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            query = "SELECT json_extract(doc, '$.name') FROM projects WHERE id = 2"
            (name,) = db.execute(query).fetchone()
            assert name.startswith("aiohttp ")  # one of the writes, whole
        originals = {page: request("GET", gateway.url + page).body for page in PAGES[:3]}

    # The copy serves the same answers (with the project as it was then).
    port = free_port()
    config = write_config(tmp_path / "copy.toml", "", copy, port)
    config.write_text(config.read_text().replace('url = ""', 'url = "http://127.0.0.1:9"'))
    with GatewayProcess(config, port) as restored:
        for page in PAGES[:3]:
            body = request("GET", restored.url + page).body
            assert body.replace(restored.url.encode(), b"") == originals[page].replace(
                gateway.url.encode(), b""
            )
        assert request("GET", restored.url + PAGES[3]).status == 200


def test_backup_refuses_to_overwrite_the_mirror_and_says_why(deployment, tmp_path):
    mirror = copy_mirror(deployment.storage, tmp_path / "m.sqlite3")
    # (With an upstream: without one, the mirror is the demo's.)
    config = write_config(tmp_path / "c.toml", "http://127.0.0.1:9", mirror, free_port())
    result = run_cli("backup", "--config", str(config), str(mirror))
    assert result.returncode == 1
    assert result.stderr.strip().endswith("that is the mirror itself")
    result = run_cli("backup", "--config", str(config), str(tmp_path / "nowhere" / "b.sqlite3"))
    assert result.returncode == 1
    assert "no such folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    for other in (mirror.with_name(mirror.name + "-wal"), Path("/dev/null")):
        result = run_cli("backup", "--config", str(config), str(other))
        assert result.returncode == 1, other
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert Path("/dev/null").is_char_device()
    # A folder: the copy goes in it, under the mirror's name.
    folder = tmp_path / "backups"
    folder.mkdir()
    result = run_cli("backup", "--config", str(config), str(folder))
    assert result.returncode == 0, result.stderr
    assert (folder / mirror.name).is_file()


def test_a_trailing_slash_names_a_folder_made_for_the_copy(deployment, tmp_path):
    mirror = copy_mirror(deployment.storage, tmp_path / "m.sqlite3")
    config = write_config(tmp_path / "c.toml", "http://127.0.0.1:9", mirror, free_port())
    folder = tmp_path / "backups"
    result = run_cli("backup", "--config", str(config), f"{folder}/")
    assert result.returncode == 0, result.stderr
    assert folder.is_dir()
    assert (folder / mirror.name).is_file()
    assert str(folder / mirror.name) in result.stdout
    # A file where the folder should be, or no folder above it: one line, nothing made.
    for where, why in ((f"{mirror}/", "not a folder"), (f"{tmp_path}/a/b/", "no such folder")):
        result = run_cli("backup", "--config", str(config), where)
        assert result.returncode == 1
        assert why in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "a").exists()
