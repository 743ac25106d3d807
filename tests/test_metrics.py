"""/metrics: Prometheus' text format, counting what clients see, summed over
every server process."""

from __future__ import annotations

import asyncio
import gc
import os
import sqlite3
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.ops.metrics import BUCKETS
from mirror.resources import RESOURCES
from tests.support import GatewayProcess, copy_mirror, free_port, request, write_config

PAGE = "/api/1.4/patches/?page=3&per_page=50"
REQUESTS = "patchwork_gateway_http_requests_total"
#: The labels of a successful read of PAGE.
PAGE_READ = {"route": "/api/{version}/patches/", "method": "GET", "status": "200"}


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def _scrape(client) -> dict:
    reply = await client.get("/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return _samples(await reply.text())


async def test_requests_are_counted_by_route_template_method_and_status(gateway):
    before = await _scrape(gateway)
    for number in range(1, 21):  # twenty details: one route, not twenty labels
        assert (await gateway.get(f"/api/1.4/patches/{number + 10}/")).status in (200, 404)
    for _ in range(3):
        assert (await gateway.get(PAGE)).status == 200
    etag = (await gateway.get(PAGE)).headers["ETag"]
    assert (await gateway.get(PAGE, headers={"If-None-Match": etag})).status == 304
    assert (await gateway.get("/api/1.4/no-such-thing/")).status == 404
    assert (await gateway.get("/api/1.1/patches/1/comments/")).status == 200
    after = await _scrape(gateway)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    requests = "patchwork_gateway_http_requests_total"
    list_route = "/api/{version}/patches/"
    assert delta(requests, route=list_route, method="GET", status="200") == 4
    assert delta(requests, route=list_route, method="GET", status="304") == 1
    details = sum(
        delta(requests, route="/api/{version}/patches/{id}/", method="GET", status=status)
        for status in ("200", "404")
    )
    assert details == 20
    assert delta(requests, route="unmatched", method="GET", status="404") == 1
    comments = "/api/{version}/patches/{patch_id}/comments/"
    assert delta(requests, route=comments, method="GET", status="200") == 1
    routes = {dict(labels)["route"] for name, labels in after if name == requests}
    assert routes <= {
        list_route,
        "/api/{version}/patches/{id}/",
        comments,
        "unmatched",
    }

    # The histogram counts each answer once, in cumulative buckets.
    duration = "patchwork_gateway_http_request_duration_seconds"
    assert delta(f"{duration}_count", route=list_route) == 5
    buckets = [_value(after, f"{duration}_bucket", route=list_route, le=str(b)) for b in BUCKETS]
    assert buckets == sorted(buckets)
    assert _value(after, f"{duration}_bucket", route=list_route, le="+Inf") == _value(
        after, f"{duration}_count", route=list_route
    )
    assert _value(after, f"{duration}_sum", route=list_route) > 0

    # The first read of the page missed the cache, the others hit it.
    assert delta("patchwork_gateway_response_cache_hits_total") >= 3
    assert delta("patchwork_gateway_response_cache_misses_total") >= 1
    assert _value(after, "patchwork_gateway_response_cache_bytes") > 10_000
    assert _value(after, "patchwork_gateway_response_cache_entries") >= 1


async def test_mirror_and_sync_state_are_exported(gateway):
    # Objects are counted in the background: a scrape never waits for them.
    samples = await _scrape(gateway)
    for _ in range(50):
        if _value(samples, "patchwork_gateway_mirror_objects", resource="patches"):
            break
        await asyncio.sleep(0.1)
        samples = await _scrape(gateway)
    with sqlite3.connect(gateway.mirror) as db:
        for name, res in RESOURCES.items():
            # What anonymous callers may list (status_details is off).
            public = f" WHERE {res.public_column} = 1" if res.public_column else ""
            (count,) = db.execute(f"SELECT count(*) FROM {res.table}{public}").fetchone()
            key = ("patchwork_gateway_mirror_objects", frozenset({"resource": name}.items()))
            assert samples.get(key) == (None if res.requires_auth else count), name
    assert _value(samples, "patchwork_gateway_initial_sync_complete") == 1
    assert _value(samples, "patchwork_gateway_mirror_size_bytes") >= os.path.getsize(gateway.mirror)
    # The recorded crawl's newest event is long past.
    assert _value(samples, "patchwork_gateway_sync_cursor_age_seconds") > 3600


async def test_garbage_collector_pauses_are_exported(gateway):
    """A full collection stops the event loop: operators see for how long,
    by generation; what start-up made is out of the collector's sight."""
    await _scrape(gateway)  # (the server's first steps are done)
    assert gc.get_freeze_count() > 0
    gc.collect()
    samples = await _scrape(gateway)
    assert _value(samples, "patchwork_gateway_gc_pause_seconds_count", generation="2") >= 1
    assert _value(samples, "patchwork_gateway_gc_pause_seconds_sum", generation="2") > 0


async def test_upstream_failures_are_counted_by_kind(gateway):
    before = await _scrape(gateway)
    # A write goes upstream, which is down; so does a token's first check.
    reply = await gateway.post(
        "/api/1.4/bundles/", data={"name": "x"}, headers={"Authorization": "Token abc"}
    )
    assert reply.status == 502
    reply = await gateway.get("/api/1.4/users/", headers={"Authorization": "Token def"})
    assert reply.status in (502, 503)
    after = await _scrape(gateway)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    errors = "patchwork_gateway_upstream_errors_total"
    assert delta(errors, kind="forward", error="unreachable") >= 1
    assert delta(errors, kind="identity", error="unreachable") == 1
    requests = "patchwork_gateway_upstream_requests_total"
    assert delta(requests, kind="forward", outcome="unreachable") >= 1
    write = "/api/{version}/bundles/"
    assert delta("patchwork_gateway_http_requests_total", route=write, method="POST", status="502")
    # Nothing of the caller's credentials in the metrics.
    text = await (await gateway.get("/metrics")).text()
    assert "abc" not in text and "def" not in text


@pytest.mark.slow
def test_several_processes_are_summed_whichever_answers(deployment, tmp_path):
    port = free_port()
    mirror = copy_mirror(deployment.storage, tmp_path / "m.sqlite3")
    config = write_config(tmp_path / "c.toml", "", mirror, port, server="workers = 2")
    with GatewayProcess(config, port) as gateway:
        assert gateway.proc is not None
        deadline = time.monotonic() + 30
        folder = None
        while time.monotonic() < deadline and folder is None:
            folder = _folder_of(gateway.proc.pid)
            time.sleep(0.2)
        assert folder is not None, "the extra process shares a metrics folder"
        answered = 200
        for _ in range(answered):  # a connection each: the kernel spreads them
            assert request("GET", gateway.url + PAGE).status == 200
        # Each process publishes its counts once a second: soon both have,
        # and ten scrapes in a row (reaching either process) count every read.
        totals: list[float] = []
        writers: set[int] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            writers = {int(path.stem.rsplit("_", 1)[1]) for path in folder.glob("*.db")}
            if len(writers) == 2 and totals[-10:] == [answered] * 10:
                break
            samples = _samples(request("GET", gateway.url + "/metrics").body.decode())
            totals.append(_value(samples, REQUESTS, **PAGE_READ))
            time.sleep(0.05)
        assert totals[-10:] == [answered] * 10
        assert max(totals) == answered
        assert len(writers) == 2, "both processes counted"
    assert not folder.exists(), "the folder goes with the processes"


def _folder_of(pid: int) -> Path | None:
    """The metrics folder in the environment of ``pid``'s child (the extra
    server process, which the first one started)."""
    for child in Path("/proc").iterdir():
        if not child.name.isdigit():
            continue
        try:
            stat = (child / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[1]) != pid:
                continue
            for entry in (child / "environ").read_bytes().split(b"\0"):
                if entry.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
                    return Path(entry.split(b"=", 1)[1].decode())
        except (OSError, IndexError, ValueError):
            continue
    return None


@pytest.mark.slow
def test_the_sync_workers_progress_is_exported_under_run(deployment, tmp_path):
    port = free_port()
    mirror = copy_mirror(deployment.storage, tmp_path / "m.sqlite3")
    config = write_config(tmp_path / "c.toml", deployment.upstream, mirror, port)
    with GatewayProcess(config, port, command="run") as gateway:
        deadline = time.monotonic() + 60
        samples: dict = {}
        while time.monotonic() < deadline:
            samples = _samples(request("GET", gateway.url + "/metrics").body.decode())
            if _value(samples, "patchwork_gateway_sync_upstream_requests_total") > 0:
                break
            time.sleep(0.3)
    assert _value(samples, "patchwork_gateway_sync_upstream_requests_total") > 0
    assert _value(samples, "patchwork_gateway_sync_failing") == 0
    assert 0 <= _value(samples, "patchwork_gateway_sync_lag_seconds") < 60
    assert ("patchwork_gateway_sync_upstream_failures_total", frozenset()) in samples


async def test_a_client_error_raised_deep_down_is_counted_as_itself(gateway):
    async def body():  # chunked, so only reading it finds it too large
        for _ in range(12):
            yield b"x" * (256 * 1024)

    before = await _scrape(gateway)
    reply = await gateway.patch(
        "/api/1.2/patches/1/", data=body(), headers={"Authorization": "Token abc"}
    )
    assert reply.status == 413
    after = await _scrape(gateway)
    route = "/api/{version}/patches/{id}/"
    requests = "patchwork_gateway_http_requests_total"
    assert (
        _value(after, requests, route=route, method="PATCH", status="413")
        - _value(before, requests, route=route, method="PATCH", status="413")
        == 1
    )
    assert _value(after, requests, route=route, method="PATCH", status="500") == 0


async def test_metrics_still_answer_when_the_mirror_cannot_be_read(gateway, monkeypatch):
    from gateway.http.app import STATE

    assert (await gateway.get(PAGE)).status == 200
    reader = gateway.app[STATE].reader

    def locked(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(reader, "meta", locked)
    monkeypatch.setattr(gateway.app[STATE].sync, "_read_at", -1e9)  # read again now
    samples = await _scrape(gateway)
    assert _value(samples, "patchwork_gateway_mirror_readable") == 0
    assert _value(samples, REQUESTS, **PAGE_READ) >= 1
