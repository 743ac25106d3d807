"""Liveness and readiness for load balancers: a stale or unsynced replica
is not ready, and says why."""

from __future__ import annotations

import json

import pytest

from cli.config import parse
from gateway.http.app import create_app
from mirror.reader import Reader
from tests.support import GatewayProcess, copy_mirror, free_port, request, run_cli


async def _client(aiohttp_client, mirror, max_lag: float):
    config = parse(
        {
            "upstream": {"url": "http://127.0.0.1:9"},
            "storage": {"path": str(mirror)},
            "server": {"ready_max_lag": max_lag},
        }
    )
    reader = Reader(mirror)
    await reader.open()
    client = await aiohttp_client(create_app(config.gateway, reader))
    return client, reader


@pytest.mark.parametrize(("max_lag", "ready"), [(30 * 86400, True), (0, True), (0.001, False)])
async def test_readiness_follows_the_mirrors_age(
    deployment, tmp_path, aiohttp_client, max_lag, ready
):
    mirror = copy_mirror(deployment.storage, tmp_path / "m.sqlite3")
    client, reader = await _client(aiohttp_client, mirror, max_lag)
    try:
        live = await client.get("/_gateway/health/live")
        assert live.status == 200
        reply = await client.get("/_gateway/health/ready")
        body = await reply.json()
        assert reply.status == (200 if ready else 503)
        assert body["status"] == ("ready" if ready else "not ready")
        assert body["lag_seconds"] is not None and body["lag_seconds"] >= 0
        if not ready:
            assert "last matched upstream" in body["problems"][0]
    finally:
        await reader.close()


async def test_a_mirror_never_synced_is_not_ready(tmp_path, aiohttp_client):
    client, reader = await _client(aiohttp_client, tmp_path / "empty.sqlite3", 0)
    try:
        reply = await client.get("/_gateway/health/ready")
        assert reply.status == 503
        assert (await reply.json())["problems"] == ["the initial sync is not complete"]
        assert (await client.get("/_gateway/health/live")).status == 200
    finally:
        await reader.close()


def test_the_status_command(deployment):
    shown = run_cli("status", "--config", str(deployment.config))
    assert shown.returncode == 0, shown.stderr
    assert "initial     complete" in shown.stdout
    assert "patches 767" in shown.stdout
    document = json.loads(run_cli("status", "--config", str(deployment.config), "--json").stdout)
    assert document["counts"]["patches"] == 767
    assert document["mirror"]["bytes"] > 1_000_000
    assert document["cursor"]


@pytest.mark.slow
def test_the_demo_is_ready_and_reports_no_growing_lag(tmp_path):
    """Built once from a recording, the demo does not fall behind anything."""
    port = free_port()
    config = tmp_path / "demo.toml"
    config.write_text(f'[storage]\npath = "{tmp_path / "m.sqlite3"}"\n[server]\nport = {port}\n')
    with GatewayProcess(config, port) as gateway:
        assert request("GET", gateway.url + "/_gateway/health/ready").status == 200
        scraped = request("GET", gateway.url + "/metrics").body.decode()
    assert "patchwork_gateway_initial_sync_complete 1.0" in scraped
    assert "patchwork_gateway_sync_lag_seconds" not in scraped
    assert "patchwork_gateway_sync_cursor_age_seconds" not in scraped
    document = json.loads(run_cli("status", "--config", str(config), "--json").stdout)
    assert document["mode"] == "demo"
    assert document["sync"]["lag_seconds"] is None
