"""The systemd unit in deploy/systemd: valid for systemd, its command line
valid for the real CLI, and its stop sequence what the gateway does."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from tests.support import GatewayProcess, copy_mirror, free_port, run_cli, write_config

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "deploy" / "systemd" / "patchwork-gateway.service"
STATE = "/var/lib/patchwork-gateway"


def unit_settings(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> its values, in order (keys may repeat)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


SETTINGS = unit_settings(UNIT.read_text())


def setting(name: str) -> str:
    values = SETTINGS.get(name)
    assert values, f"{UNIT.name} has no {name}"
    return values[-1]


def exec_start() -> list[str]:
    return shlex.split(setting("Service.ExecStart"))


def _seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "min": 60}
    for suffix, factor in units.items():
        if value.endswith(suffix) and value[: -len(suffix)].isdigit():
            return int(value[: -len(suffix)]) * factor
    return float(value)


def _analyze() -> str:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.skip("systemd-analyze is not installed (Debian: the systemd package)")
    return binary


def _verify(binary: str, unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=unit.parent,
        check=False,
    )


def _installable(tmp_path: Path) -> Path:
    """The unit, its ExecStart pointing at this environment's command."""
    command = Path(sys.executable).parent / "patchwork-gateway"
    if not command.exists():
        command = Path(shutil.which("patchwork-gateway") or sys.executable)
    text = UNIT.read_text().replace(exec_start()[0], str(command))
    unit = tmp_path / UNIT.name
    unit.write_text(text)
    return unit


def test_systemd_accepts_the_unit(tmp_path):
    binary = _analyze()
    # Whether systemd-analyze can verify anything at all here (a container
    # may lack what it needs): a unit with nothing to find fault with.
    trivial = tmp_path / "trivial.service"
    trivial.write_text(f"[Service]\nExecStart={sys.executable} -c pass\n")
    probe = _verify(binary, trivial)
    if probe.returncode != 0 or probe.stdout.strip() or probe.stderr.strip():
        pytest.skip(f"systemd-analyze verify cannot run here: {probe.stderr.strip()[:300]}")
    result = _verify(binary, _installable(tmp_path))
    # It exits 0 on unknown keys and values it cannot parse, but says so.
    assert result.returncode == 0, result.stderr
    assert (result.stdout + result.stderr).strip() == "", result.stdout + result.stderr


def test_the_unit_is_hardened(tmp_path):
    binary = _analyze()
    unit = _installable(tmp_path)
    result = subprocess.run(
        # (The threshold is in tenths of the level shown, 0.0 to 10.0.)
        [binary, "security", "--offline=yes", "--threshold=30", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    if "--offline" in result.stderr or "unrecognized option" in result.stderr:
        pytest.skip("this systemd-analyze has no `security --offline` (systemd 250 and later)")
    summary = result.stdout.strip().splitlines()[-1:] or [result.stderr]
    assert result.returncode == 0, f"exposure above 3.0: {summary[0]}"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert setting(f"Service.{key}") == "yes", key
    assert setting("Service.ProtectSystem") == "strict"


def test_the_state_directory_is_the_writable_one():
    name = setting("Service.StateDirectory")
    assert f"/var/lib/{name}" == STATE
    assert STATE in setting("Service.ReadWritePaths").split()
    assert setting("Service.WorkingDirectory") == STATE
    assert setting("Service.User") not in ("", "root")


def test_the_command_line_is_the_cli_s():
    argv = exec_start()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert Path(argv[0]).is_absolute() and Path(argv[0]).name in scripts
    assert scripts[Path(argv[0]).name] == "cli.main:main"
    args = argv[1:]
    assert args[0] == "run" and "--config" in args
    config = args[args.index("--config") + 1]
    assert config == "/etc/patchwork-gateway/config.toml"
    helped = run_cli(*args, "--help", timeout=60)
    assert helped.returncode == 0, helped.stderr
    assert "--config" in helped.stdout


def test_the_command_line_reaches_the_configuration(tmp_path):
    """Parsed as the unit gives it, up to reading the configuration, whose
    errors exit with status 2 (which the unit does not restart on)."""
    args = exec_start()[1:]
    config = tmp_path / "config.toml"
    config.write_text('[upstream]\nurl = "http://127.0.0.1:9"\n[server]\nport = "http"\n')
    args[args.index("--config") + 1] = str(config)
    result = run_cli(*args, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("config error: "), result.stderr
    assert "[server] port" in result.stderr
    assert "usage:" not in result.stderr
    assert "2" in setting("Service.RestartPreventExitStatus").split()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_sigterm_to_the_server_alone_stops_everything_cleanly(deployment, tmp_path):
    """KillMode=mixed: SIGTERM reaches the server only; it stops the sync
    worker, which finishes on that signal (not killed after a grace), and
    exits 0 (not a failure to restart) before TimeoutStopSec's SIGKILL."""
    assert setting("Service.KillMode") == "mixed"
    assert setting("Service.KillSignal") == "SIGTERM"
    assert setting("Service.Restart") == "on-failure"
    limit = _seconds(setting("Service.TimeoutStopSec"))
    mirror = copy_mirror(deployment.storage, tmp_path / "mirror.sqlite3")
    port = free_port()
    config = write_config(
        tmp_path / "config.toml",
        deployment.upstream,
        mirror,
        port,
        sync="poll_interval = 1",
        level="info",
    )
    with GatewayProcess(config, port, command="run") as gateway:
        proc = gateway.proc
        assert proc is not None
        deadline = time.monotonic() + 60
        # The worker runs (its signals handled) once it says it follows upstream.
        while "following " not in gateway.stderr():
            assert time.monotonic() < deadline, "no sync worker started"
            time.sleep(0.05)
        workers = _children(proc.pid)
        assert workers
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(limit)  # (systemd's SIGKILL comes after this)
        assert code == 0, gateway.stderr()
        # The worker stopped on the server's SIGTERM, of itself...
        assert gateway.stderr().count("sync worker stopped") == 1, gateway.stderr()
        assert "is gone; stopping" not in gateway.stderr()
        # ... and the server waited for it: gone, not reparented.
        assert not any(Path(f"/proc/{worker}").exists() for worker in workers)
        assert "exited with status" not in gateway.stderr()
