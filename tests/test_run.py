"""`patchwork-gateway run`: serving while keeping the mirror fresh.

Real processes on loopback: a fake Patchwork that changes, the gateway's
`run` command (server plus sync worker), HTTP clients reading from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fake import FakePatchwork
from tests.mirroring import TOKEN, fake_upstream, serve
from tests.support import GatewayProcess, Reply, free_port, request, run_cli, write_config

pytestmark = pytest.mark.slow

POLL = 1.0
SECRET = "webhook-secret"


@dataclass
class Running:
    fake: FakePatchwork
    upstream: str
    gateway: GatewayProcess

    def get(self, path: str, **headers: str) -> Reply:
        return request("GET", self.gateway.url + path, headers=headers)

    def json(self, path: str) -> Any:
        reply = self.get(path)
        assert reply.status == 200, (path, reply.status, reply.body[:200])
        return json.loads(reply.body)


def wait_for(check: Callable[[], bool], timeout: float, step: float = 0.05) -> float:
    """Seconds until ``check()`` holds; fails after ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout}s")
        time.sleep(step)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    fake = fake_upstream()
    tmp = tmp_path_factory.mktemp("run")
    with serve(fake) as upstream, run(fake, upstream, tmp, token=TOKEN) as gateway:
        yield gateway


@contextlib.contextmanager
def run(
    fake: FakePatchwork, upstream: str, tmp: Path, token: str = "", **sync: Any
) -> Iterator[Running]:
    settings = {"poll_interval": POLL, "sweep_interval": 4, "hot_interval": 2}
    settings |= {"sweep_budget": 1200, "webhook_secret": SECRET, **sync}
    port = free_port()
    config = write_config(
        tmp / "config.toml",
        upstream,
        tmp / "mirror.sqlite3",
        port,
        sync="\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items()),
        server="status_details = true",  # (every count: the tests compare them all)
        token=token,
        level="info",
    )
    with GatewayProcess(config, port, command="run") as gateway:
        running = Running(fake, upstream, gateway)
        wait_for(
            lambda: running.json("/_gateway/status")["initial_sync"] == "complete",
            120,
            0.2,
        )
        yield running


def test_a_change_with_an_event_is_served_within_the_poll_interval(running: Running) -> None:
    assert running.json("/api/1.4/patches/100/")["state"] != "accepted"
    running.fake.set_state(100, "accepted", actor_id=2)
    lag = wait_for(lambda: running.json("/api/1.4/patches/100/")["state"] == "accepted", 30)
    assert lag <= POLL + 2

    made = running.fake.new_series(2, n_patches=2, cover=True)
    series = made["series"]
    categories = {"series-created", "series-completed"}
    wait_for(
        lambda: (
            {e["category"] for e in running.json(f"/api/1.4/events/?series={series}")} >= categories
        ),
        POLL + 2,
    )
    shown = running.json(f"/api/1.4/series/{series}/")
    assert [p["id"] for p in shown["patches"]] == made["patches"]


def test_a_change_without_an_event_is_found_by_a_sweep(running: Running) -> None:
    running.fake.set_commit_ref(101, "feedfacefeedfacefeedfacefeedfacefeedface")
    running.fake.set_archived(5, True)  # an old patch: the full sweep finds it
    wait_for(
        lambda: (
            running.json("/api/1.4/patches/101/")["commit_ref"]
            == "feedfacefeedfacefeedfacefeedfacefeedface"
            and running.json("/api/1.4/patches/5/")["archived"]
        ),
        30,
        0.2,
    )


def test_every_answer_says_when_the_mirror_last_synced(running: Running) -> None:
    for path in ("/api/", "/api/1.4/patches/?per_page=1", "/api/1.1/projects/1/", "/nowhere/"):
        stamp = running.get(path).header("X-Patchwork-Gateway-Synced")
        assert stamp and stamp.endswith("Z"), path
    status = running.json("/_gateway/status")
    assert status["upstream"] == running.upstream
    assert status["sync"]["state"] == "following"
    assert status["sync"]["running"] is True
    assert status["sync"]["lag_seconds"] < POLL + 5
    assert status["sync"]["last_error"] is None
    assert status["sync"]["cursor"]
    assert status["sync"]["upstream_requests_per_minute"] > 0
    fake_counts = {"patch_comments": "patch-comments", "cover_comments": "cover-comments"}
    for name, count in status["counts"].items():
        assert count == len(running.fake.ids(fake_counts.get(name, name))), name
    assert TOKEN not in json.dumps(status)


def test_webhooks_are_verified(running: Running) -> None:
    body = json.dumps({"id": 999_999, "category": "patch-state-changed", "payload": {}}).encode()

    def post(payload: bytes, **headers: str) -> int:
        return request("POST", running.gateway.url + "/_gateway/webhook", headers, payload).status

    good = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert post(body) == 401
    assert post(body, **{"X-Patchwork-Signature": "sha256=" + "0" * 64}) == 403
    assert post(body + b" ", **{"X-Patchwork-Signature": good}) == 403
    assert post(body, **{"X-Patchwork-Signature": good}) == 202
    assert post(body, **{"X-Patchwork-Signature": good}) == 409  # replayed
    assert post(b"x" * (2 << 20), **{"X-Patchwork-Signature": good}) == 413


def _sign(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Patchwork-Signature": signature}
    return body, headers


def test_a_webhook_is_applied_at_once(tmp_path: Path) -> None:
    """Polling once a minute, a pushed change is served in about a second."""
    fake = fake_upstream()
    with (
        serve(fake) as upstream,
        run(fake, upstream, tmp_path, token=TOKEN, poll_interval=60) as running,
    ):
        time.sleep(0.5)  # past the first poll
        fake.set_delegate(200, 3, actor_id=2)
        event = fake.events()[0]  # as Patchwork 4.0 posts it
        body, headers = _sign(event)
        started = time.monotonic()
        reply = request("POST", running.gateway.url + "/_gateway/webhook", headers, body)
        assert reply.status == 202
        wait_for(lambda: _delegate(running, 200) == 3, 5)
        assert time.monotonic() - started < 3


def _delegate(running: Running, patch: int) -> int | None:
    delegate = running.json(f"/api/1.4/patches/{patch}/")["delegate"]
    return delegate["id"] if delegate else None


def test_reads_survive_an_upstream_outage_and_the_sync_recovers(tmp_path: Path) -> None:
    fake = fake_upstream()
    with serve(fake) as upstream, run(fake, upstream, tmp_path, token=TOKEN) as running:
        page = running.get("/api/1.4/patches/?order=-date&per_page=30&page=3")
        fake.down = True
        wait_for(lambda: running.json("/_gateway/status")["sync"].get("last_error"), 30, 0.2)
        again = running.get("/api/1.4/patches/?order=-date&per_page=30&page=3")
        assert (again.status, again.body) == (page.status, page.body)
        assert running.get("/api/1.4/events/?per_page=5").status == 200
        fake.down = False
        fake.set_state(300, "rejected")
        wait_for(lambda: running.json("/api/1.4/patches/300/")["state"] == "rejected", 60)
        # Every part of the sync (polls, sweeps) answers again, by itself.
        wait_for(lambda: running.json("/_gateway/status")["sync"]["last_error"] is None, 60, 0.2)
        assert running.json("/_gateway/status")["sync"]["state"] == "following"


def test_a_gateway_mirrors_a_gateway(running: Running, tmp_path: Path) -> None:
    """A second gateway syncs from the first, anonymously: the origin only
    ever hears from the first."""
    fake = running.fake
    upstream_hits = fake.requests
    with run(fake, running.gateway.url, tmp_path) as downstream:
        assert fake.requests - upstream_hits < 50  # polls of the first; no crawl
        for path in (
            "/api/1.4/patches/?per_page=250&page=2",
            "/api/1.2/series/?order=-date&per_page=7&page=3",
            "/api/1.4/events/?per_page=100&page=4",
            "/api/1.1/covers/?project=aiohttp",
            "/api/1.4/bundles/",
            "/api/1.4/projects/aiohttp/",
            "/api/1.4/patches/20/comments/",
        ):
            ours, theirs = downstream.get(path), running.get(path)
            assert ours.status == theirs.status, path
            mine = ours.body.replace(downstream.gateway.url.encode(), b"ORIGIN")
            assert mine == theirs.body.replace(running.gateway.url.encode(), b"ORIGIN"), path

        fake.set_state(400, "superseded")
        wait_for(lambda: downstream.json("/api/1.4/patches/400/")["state"] == "superseded", 10)


def test_a_taken_port_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    """Bound before anything starts: no "serving" line, no sync worker, no
    mirror made for nothing."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(
            tmp_path / "c.toml",
            f"http://127.0.0.1:{free_port()}",
            tmp_path / "m.sqlite3",
            port,
            level="info",
        )
        result = run_cli("run", "--config", str(config), timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()  # (logging at info: "serving", "started"...)
    assert len(lines) == 1, result.stderr
    assert lines[0].endswith(
        f" ERROR patchwork-gateway: cannot serve on 127.0.0.1:{port}: Address already in use"
    )
    assert not list(tmp_path.glob("m.sqlite3*"))
