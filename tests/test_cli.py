"""The command line as a newcomer meets it: --version and --help, the demo
mirror for status, check and backup, JSON from ``status --json`` whatever
happens, a closed pipe, --host and --port, an upstream given as git-pw's
API URL, and failed starts that leave nothing behind."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from cli import demo
from mirror import schema
from mirror.control import Control, claim
from tests.support import ThreadedServer, free_port, request, run_cli

COMMANDS = ("run", "sync", "serve", "status", "check", "backup")


@pytest.fixture(scope="module")
def demo_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A configuration without an upstream, its demo mirror built."""
    tmp = tmp_path_factory.mktemp("demo")
    asyncio.run(demo.build(tmp / "m.sqlite3"))
    config = tmp / "demo.toml"
    config.write_text(f'[storage]\npath = "{tmp / "m.sqlite3"}"\n[server]\nport = {free_port()}\n')
    return config


def _files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.suffix != ".toml")


def test_every_command_has_a_version_and_a_one_line_description():
    version = importlib.metadata.version("patchwork-gateway")
    assert run_cli("--version").stdout.strip() == f"patchwork-gateway {version}"
    top = run_cli("--help").stdout
    description = top.split("\n\n")[1]
    assert "``" not in top and "run_app" not in top
    assert description.count(".") == 1, description  # one sentence
    for command in COMMANDS:
        shown = run_cli(command, "--version")
        assert shown.stdout.strip() == f"patchwork-gateway {version}", command
        helped = run_cli(command, "--help").stdout
        assert "``" not in helped, command
        summary = helped.split("\n\n")[1]
        assert "\n" not in summary.strip(), (command, summary)
        assert command in top


def test_status_json_is_json_even_without_a_mirror(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'[upstream]\nurl = "http://127.0.0.1:9"\n[storage]\npath = "{tmp_path}/m"\n')
    shown = run_cli("status", "--config", str(config), "--json")
    assert shown.returncode == 1
    document = json.loads(shown.stdout)
    assert document["mirror"] == {
        "path": str(tmp_path / "m"),
        "exists": False,
        "problem": "no mirror yet (run `sync`)",
    }
    assert document["upstream"] == "http://127.0.0.1:9"
    assert _files(tmp_path) == []  # (looking made nothing)
    text = run_cli("status", "--config", str(config))
    assert text.returncode == 1
    assert text.stderr.strip() == f"{tmp_path / 'm'}: no mirror yet (run `sync`)"

    # Not a mirror: one line, or JSON saying so; no traceback.
    (tmp_path / "m").write_bytes(b"not a database, but long enough to be read as one" * 100)
    shown = run_cli("status", "--config", str(config), "--json")
    assert shown.returncode == 1
    assert json.loads(shown.stdout)["mirror"]["problem"] == "file is not a database"
    text = run_cli("status", "--config", str(config))
    assert text.returncode == 1
    assert text.stderr.strip() == f"{tmp_path / 'm'}: file is not a database"


@pytest.mark.slow
def test_status_check_and_backup_work_on_the_demo(demo_config, tmp_path):
    shown = run_cli("status", "--config", str(demo_config))
    assert shown.returncode == 0, shown.stderr
    assert "m-demo.sqlite3" in shown.stdout
    assert "patches 767" in shown.stdout
    document = json.loads(run_cli("status", "--config", str(demo_config), "--json").stdout)
    assert document["mode"] == "demo"
    assert document["initial_sync"] == "complete"
    assert document["sync"]["lag_seconds"] is None  # no upstream to lag behind
    assert document["counts"]["patches"] == 767

    checked = run_cli("check", "--config", str(demo_config))
    assert checked.returncode == 2
    lines = checked.stderr.strip().splitlines()
    assert len(lines) == 1 and "nothing to compare with" in lines[0], checked.stderr

    copied = run_cli("backup", "--config", str(demo_config), f"{tmp_path}/backups/")
    assert copied.returncode == 0, copied.stderr
    with sqlite3.connect(tmp_path / "backups" / "m-demo.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM patches").fetchone()[0] == 767


@pytest.mark.slow
def test_a_closed_pipe_ends_quietly(demo_config):
    """``status | head -1``: no traceback, no "cannot serve"."""
    # The pipe's reader is gone before the command starts: its first write
    # meets a closed pipe, whenever it comes.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        with subprocess.Popen(
            [sys.executable, "-m", "cli.main", "status", "--config", str(demo_config)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            assert proc.stderr is not None
            errors = proc.stderr.read()
            assert proc.wait(60) == 128 + signal.SIGPIPE
    finally:
        os.close(write_end)
    assert errors == ""


@pytest.mark.slow
def test_host_and_port_on_the_command_line_win(demo_config):
    port = free_port()
    overridden = ["--host", "127.0.0.1", "--port", str(port)]
    with subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--config", str(demo_config), *overridden],
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    reply = request("GET", f"http://127.0.0.1:{port}/api/1.4/projects/", timeout=2)
                    break
                except OSError:
                    assert proc.poll() is None and time.monotonic() < deadline
                    time.sleep(0.1)
            assert reply.status == 200
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.stderr is not None
            logged = proc.stderr.read()
            proc.wait(30)
    assert f"serving the Patchwork API on http://127.0.0.1:{port}/api/" in logged
    bad = run_cli("serve", "--config", str(demo_config), "--port", "70000")
    assert bad.returncode == 2
    assert "--port: expected a port from 0 to 65535" in bad.stderr


def _stale_mirror(path: Path) -> None:
    """A mirror whose worker died in its initial sync: the control file
    still says what it was doing."""
    schema.prepare(path)
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO meta (key, value) VALUES ('sync.state', 'running')")
    control = Control(path)
    control.set_status(state="initial sync", pid=2**22 + 1)
    control.close()


@pytest.mark.slow
def test_status_shows_no_sync_running_when_no_worker_runs(tmp_path):
    mirror = tmp_path / "m.sqlite3"
    _stale_mirror(mirror)
    config = tmp_path / "c.toml"
    config.write_text(f'[upstream]\nurl = "http://127.0.0.1:9"\n[storage]\npath = "{mirror}"\n')

    document = json.loads(run_cli("status", "--config", str(config), "--json").stdout)
    assert document["sync"]["running"] is False
    assert document["sync"]["state"] == "stopped"
    assert document["initial_sync"] == "interrupted"
    text = run_cli("status", "--config", str(config)).stdout
    assert "sync worker not running" in text
    assert "initial     interrupted" in text

    held = claim(mirror)  # as a live worker does
    try:
        document = json.loads(run_cli("status", "--config", str(config), "--json").stdout)
    finally:
        held.close()
    assert document["sync"]["running"] is True
    assert document["sync"]["state"] == "initial sync"
    assert document["initial_sync"] == "running"


@pytest.mark.slow
def test_an_api_url_is_understood_as_the_instance_with_a_warning(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(
        '[upstream]\nurl = "https://pw.example.com/api/1.2/"\n'
        f'[storage]\npath = "{tmp_path}/m.sqlite3"\n'
    )
    shown = run_cli("status", "--config", str(config), "--json")
    assert json.loads(shown.stdout)["upstream"] == "https://pw.example.com"
    warning = shown.stderr.strip()
    assert "using https://pw.example.com, without '/api/1.2/'" in warning
    assert warning.count("\n") == 0


@pytest.fixture
def not_patchwork() -> Iterator[str]:
    """A web server that is not a Patchwork: 404 everywhere."""

    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", not_found)
    with ThreadedServer(app) as server:
        yield server.url


@pytest.mark.slow
def test_a_failed_start_leaves_nothing_behind(tmp_path, not_patchwork):
    closed = f"http://127.0.0.1:{free_port()}"
    for upstream, why in (
        (closed, f"cannot reach upstream {closed} (connection refused)"),
        (not_patchwork, f"{not_patchwork} does not serve the Patchwork API"),
    ):
        config = tmp_path / "c.toml"
        config.write_text(
            f'[upstream]\nurl = "{upstream}"\n[storage]\npath = "{tmp_path}/m.sqlite3"\n'
            '[logging]\nlevel = "info"\n'
        )
        result = run_cli("sync", "--config", str(config), "--once", timeout=120)
        assert result.returncode == 1
        errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and why in errors[0], result.stderr
        assert "Traceback" not in result.stderr
        assert _files(tmp_path) == [], upstream
    # What was there before stays.
    (tmp_path / "m.sqlite3-control").write_text("")
    result = run_cli("sync", "--config", str(config), "--once", timeout=120)
    assert result.returncode == 1
    assert _files(tmp_path) == ["m.sqlite3-control"]


@pytest.mark.slow
def test_status_and_backup_need_no_config_like_serve(tmp_path):
    """Without --config they look at the demo mirror ``serve`` builds in
    the current folder, as ``serve`` without one serves it."""
    for command in (["status"], ["status", "--json"], ["backup", str(tmp_path / "copy/")]):
        result = subprocess.run(
            [sys.executable, "-m", "cli.main", *command],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
            check=False,
        )
        assert result.returncode == 1, (command, result.stderr)  # (no demo built yet)
        assert "usage:" not in result.stderr and "Traceback" not in result.stderr
        assert "mirror-demo.sqlite3" in result.stdout + result.stderr
