"""What the sync worker says while upstream is unreachable: where and why,
once, then quiet backoff, and one line when upstream answers again."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.mirroring import TOKEN, fake_upstream
from tests.support import ThreadedServer, free_port, write_config

pytestmark = pytest.mark.slow


def test_an_unreachable_or_failing_upstream_is_said_once_and_its_return_too(tmp_path):
    """Where and why, once, then quiet backoff; one line when it answers;
    no "resuming" of an initial sync that never began."""
    port = free_port()
    upstream = f"http://127.0.0.1:{port}"
    config = write_config(
        tmp_path / "c.toml",
        upstream,
        tmp_path / "m.sqlite3",
        free_port(),
        sync="poll_interval = 0.2",
        token=TOKEN,
        level="info",
    )
    log = tmp_path / "sync.log"
    fake = fake_upstream()
    with (
        log.open("w") as output,
        subprocess.Popen(
            [sys.executable, "-m", "cli.main", "sync", "--config", str(config)],
            stderr=output,
        ) as proc,
    ):
        try:
            _wait_for_line(log, "cannot reach upstream", proc)
            time.sleep(2.0)  # a few failures more: 0.2 s, 0.4 s, 0.8 s...
            with ThreadedServer(fake.app(), port):
                _wait_for_line(log, "initial sync complete", proc, timeout=120)
                fake.down = True  # 503 to polls and sweeps alike
                _wait_for_line(log, "answers HTTP 503", proc)
                time.sleep(2.0)
                fake.down = False
                _wait_for_line(log, "answers again", proc, count=2)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    logged = log.read_text()
    said = [line for line in logged.splitlines() if "WARNING" in line or "ERROR" in line]
    assert len(said) == 2, logged
    assert f"cannot reach upstream {upstream} (connection refused); retrying in 0.2 s" in said[0]
    assert f"upstream {upstream} answers HTTP 503; " in said[1]
    assert logged.count(f"upstream {upstream} answers again") == 2, logged
    assert "resuming" not in logged


def _wait_for_line(
    log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 30, count: int = 1
) -> None:
    deadline = time.monotonic() + timeout
    while log.read_text().count(text) < count:
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
