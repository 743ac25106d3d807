"""The built wheel, installed in a fresh virtualenv outside the source tree,
serves its demo; without its demo data it says so in one line."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import (
    GatewayProcess,
    free_port,
    replay_upstream,
    request,
    run_cli,
    tokens,
    write_config,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


def test_an_installed_wheel_serves_its_demo(tmp_path):
    # (Built from a copy: building writes build/ beside the sources.)
    source = tmp_path / "source"
    skipped = (".venv", ".git", "build", "*.egg-info", "__pycache__", "*.sqlite3*")
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*skipped))
    wheels = str(tmp_path / "dist")
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, str(source)],
        tmp_path,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("patchwork_gateway-*.whl")
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)], tmp_path).returncode == 0
    installed = _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], tmp_path)
    assert installed.returncode == 0, installed.stderr[-2000:]

    port = free_port()
    config = tmp_path / "demo.toml"
    config.write_text(f'[storage]\npath = "{tmp_path / "m.sqlite3"}"\n[server]\nport = {port}\n')
    command = [str(venv / "bin" / "patchwork-gateway"), "serve", "--config", str(config)]
    with subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True) as server:
        try:
            deadline = time.monotonic() + 120
            reply = None
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    reply = request("GET", f"http://127.0.0.1:{port}/api/1.4/patches/?per_page=2")
                    break
                except OSError:
                    time.sleep(0.2)
            assert reply is not None, "the installed gateway answered"
            assert reply.status == 200
            assert "demo" in (reply.header("X-Patchwork-Gateway") or "")
        finally:
            server.terminate()
            server.wait(30)

    # Without its data, one line says so, and no empty mirror is left.
    (package,) = venv.glob("lib/python*/site-packages/cli")
    shutil.rmtree(package / "demo_data")
    second = tmp_path / "second.toml"
    second.write_text(
        f'[storage]\npath = "{tmp_path / "n.sqlite3"}"\n[server]\nport = {free_port()}\n'
    )
    failed = _run(
        [str(venv / "bin" / "patchwork-gateway"), "serve", "--config", str(second)], tmp_path
    )
    assert failed.returncode == 1
    errors = [line for line in failed.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "demo's recorded data is missing" in errors[0], failed.stderr
    assert not list(tmp_path.glob("n*.sqlite3*"))


def test_gitignore_covers_what_the_demo_a_sync_and_a_backup_leave(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    port = free_port()
    demo = tmp_path / "demo.toml"
    demo.write_text(f'[storage]\npath = "{tmp_path / "mirror.sqlite3"}"\n[server]\nport = {port}\n')
    with GatewayProcess(demo, port):
        pass
    with replay_upstream() as upstream:
        config = write_config(
            tmp_path / "c.toml", upstream.url, tmp_path / "m.sqlite3", port, token=tokens()["cibot"]
        )
        synced = run_cli("sync", "--config", str(config), "--once")
        assert synced.returncode == 0, synced.stderr
    assert run_cli("backup", "--config", str(config), f"{tmp_path}/backups/").returncode == 0
    left = {path.name for path in tmp_path.rglob("*")}
    assert {"mirror-demo.sqlite3-control", "m.sqlite3-sync.lock", "m.sqlite3"} <= left, left
    shutil.copy(ROOT / ".gitignore", tmp_path)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    shown = _run(["git", "status", "--porcelain", "--untracked-files=all"], tmp_path).stdout
    assert sorted(shown.splitlines()) == ["?? .gitignore", "?? c.toml", "?? demo.toml"]
