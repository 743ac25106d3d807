"""What the gateway tells about itself, and to whom: its own endpoints
follow the API's Host rule, counts follow what the caller may list, and
pages carry the headers that keep them from being framed."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

OWN = ("/metrics", "/_gateway/status", "/_gateway/health/live", "/_gateway/health/ready")


@pytest.fixture
async def served(make_gateway, deployment):
    """``make(**server)``: an in-process gateway on a copy of the mirror."""

    async def make(**server: object):
        return await make_gateway(deployment.upstream, control=True, **server)

    return make


async def test_own_endpoints_answer_only_the_apis_host_names(served):
    client = await served(allowed_hosts=["pw.example.com"], status_details=True)
    for path in OWN:
        reply = await client.get(path, headers={"Host": "evil.example.net"})
        assert reply.status == 400, path
        reply = await client.get(path, headers={"Host": "pw.example.com"})
        assert reply.status in (200, 503), path
    # Probes on the machine itself reach health by a loopback name.
    for host in ("localhost:8080", "127.0.0.1", "[::1]:80"):
        for path in ("/_gateway/health/live", "/_gateway/health/ready"):
            reply = await client.get(path, headers={"Host": host})
            assert reply.status in (200, 503), (host, path)
        reply = await client.get("/_gateway/status", headers={"Host": host})
        assert reply.status == 400
    reply = await client.post("/_gateway/webhook", headers={"Host": "evil.example.net"})
    assert reply.status == 400


async def _counts(client) -> tuple[dict[str, int], dict[str, float]]:
    status = await (await client.get("/_gateway/status")).json()
    text = await (await client.get("/metrics")).text()
    gauges = {}
    for line in text.splitlines():
        if line.startswith("patchwork_gateway_mirror_objects{"):
            label, value = line.split("} ")
            gauges[label.split('"')[1]] = float(value)
    return status["counts"], gauges


async def _until_counted(client) -> tuple[dict[str, int], dict[str, float]]:
    for _ in range(100):  # (metrics count in the background)
        counts, gauges = await _counts(client)
        if gauges:
            return counts, gauges
        await asyncio.sleep(0.05)
    raise AssertionError("never counted")


async def test_counts_are_of_what_anonymous_callers_may_list(served, deployment):
    with sqlite3.connect(deployment.storage) as db:
        bundles, public = db.execute("SELECT count(*), sum(public) FROM bundles").fetchone()
    assert public < bundles  # (the sync identity's private bundles are mirrored)
    counts, gauges = await _until_counted(await served())
    assert "people" not in counts and "users" not in counts
    assert counts["bundles"] == public
    assert set(gauges) == set(counts)
    assert gauges["bundles"] == public

    counts, gauges = await _until_counted(await served(status_details=True))
    assert {"people", "users"} <= set(counts)
    assert counts["bundles"] == bundles == gauges["bundles"]


async def test_details_for_the_networks_the_operator_names(served):
    client = await served(trusted_proxies=["127.0.0.1"], status_details=["10.0.0.0/8"])
    inside = await client.get("/_gateway/status", headers={"X-Forwarded-For": "10.1.2.3"})
    assert "people" in (await inside.json())["counts"]
    outside = await client.get("/_gateway/status", headers={"X-Forwarded-For": "192.0.2.1"})
    assert "people" not in (await outside.json())["counts"]
    forged = await client.get(
        "/_gateway/status", headers={"X-Forwarded-For": "10.1.2.3, 192.0.2.1"}
    )
    assert "people" not in (await forged.json())["counts"]


@pytest.mark.parametrize(
    "path",
    [
        "/project/patchwork/list/",
        "/api/1.4/patches/?format=api",
        "/api/docs/",
        "/no/such/page/",
    ],
)
async def test_pages_are_never_framed_nor_sniffed(served, path):
    client = await served()
    reply = await client.get(path, headers={"Accept": "text/html"})
    assert reply.headers["Content-Type"].startswith("text/html"), path
    assert reply.headers["X-Frame-Options"] == "DENY"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
