"""Crash safety: the sync killed (SIGKILL) at random points, many times,
while upstream keeps changing, ends with the mirror upstream has: nothing
lost, nothing doubled."""

from __future__ import annotations

import random
import subprocess
import sys
import time

import pytest

from tests.fake import FakePatchwork
from tests.mirroring import TOKEN, assert_mirror_equals, fake_upstream, serve
from tests.support import free_port, run_cli, write_config

pytestmark = pytest.mark.slow


def _change(fake: FakePatchwork, rng: random.Random) -> None:
    """One change upstream, of a kind Patchwork makes, with or without events."""
    patch = rng.choice(fake.ids("patches"))
    choice = rng.randrange(9)
    if choice == 0:
        fake.new_series(rng.choice((1, 2)), n_patches=rng.randint(1, 4), cover=rng.random() < 0.5)
    elif choice == 1:
        fake.set_state(patch, rng.choice(("accepted", "rejected", "under-review", "new")))
    elif choice == 2:
        fake.add_check(patch, 4, rng.choice(("success", "fail", "warning")), f"ci{rng.random()}")
    elif choice == 3:
        fake.add_patch_comment(patch)
    elif choice == 4:
        fake.set_delegate(patch, rng.choice((None, 2, 3)))
    elif choice == 5:
        fake.set_archived(patch, rng.random() < 0.5)
    elif choice == 6:
        fake.rename("patches", patch, f"Renamed {rng.random()}")
    elif choice == 7:
        fake.delete("patches", patch)
    else:
        fake.create_bundle(1, 4, f"b{rng.random()}", [patch], public=rng.random() < 0.5)


async def test_killed_at_random_points_the_sync_ends_complete(tmp_path) -> None:
    rng = random.Random(20261125)
    fake = fake_upstream()
    fake.delay = 0.003  # a crawl long enough to be killed in every phase
    mirror = tmp_path / "mirror.sqlite3"
    with serve(fake) as upstream:
        config = write_config(
            tmp_path / "c.toml", upstream, mirror, free_port(), "sweep_budget = 100000", token=TOKEN
        )
        command = [sys.executable, "-m", "cli.main", "sync", "--config", str(config)]
        kills = 0
        for attempt in range(16):
            # --once (crawl, or catch up) or following: either may be killed.
            proc = subprocess.Popen(
                command + (["--once"] if attempt % 2 else []),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            # Early kills land in the crawl's phases, later ones in following.
            time.sleep(rng.uniform(0.2, 1.0 if attempt < 8 else 2.0))
            if proc.poll() is None:
                proc.kill()
                kills += 1
            proc.wait()
            for _ in range(rng.randint(0, 3)):
                _change(fake, rng)
        assert kills >= 10

        fake.delay = 0
        for _ in range(2):  # the crawl's last steps, then one catch-up
            result = run_cli("sync", "--config", str(config), "--once")
            assert result.returncode == 0, result.stderr
    await assert_mirror_equals(mirror, fake)


def test_one_sync_worker_per_mirror_and_none_outlives_its_server(tmp_path) -> None:
    fake = fake_upstream()
    mirror = tmp_path / "mirror.sqlite3"
    port = free_port()
    with serve(fake) as upstream:
        config = write_config(tmp_path / "c.toml", upstream, mirror, port, token=TOKEN)
        server = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while "pid" not in _lock_text(mirror) and time.monotonic() < deadline:
                time.sleep(0.1)
            worker = int(_lock_text(mirror).split()[1])
            second = run_cli("sync", "--config", str(config), timeout=60)
            assert second.returncode == 1
            assert f"a sync worker (pid {worker}) already keeps" in second.stderr

            server.kill()  # no chance to stop its worker
            server.wait()
            deadline = time.monotonic() + 10
            while _alive(worker) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not _alive(worker)
        finally:
            if server.poll() is None:
                server.kill()


def _lock_text(mirror) -> str:
    lock = mirror.with_name(mirror.name + "-sync.lock")
    return lock.read_text() if lock.exists() else ""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
