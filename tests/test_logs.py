"""Log lines: one per request and per sync step, JSON on request, and
never a caller's credentials."""

from __future__ import annotations

import json

import pytest

from tests.support import GatewayProcess, auth_header, copy_mirror, free_port, request, write_config

pytestmark = pytest.mark.slow


def test_json_lines_one_per_request_without_credentials(deployment, tmp_path):
    port = free_port()
    mirror = copy_mirror(deployment.storage, tmp_path / "m.sqlite3")
    config = write_config(
        tmp_path / "c.toml",
        deployment.upstream,
        mirror,
        port,
        server="access_log = true",
        level="info",
        log_format="json",
    )
    with GatewayProcess(config, port) as gateway:
        request("GET", gateway.url + "/api/1.4/patches/?per_page=5")
        request("GET", gateway.url + "/api/1.4/users/", auth_header("stephen"))
        request("GET", gateway.url + "/api/1.4/nothing/")
    lines = [json.loads(line) for line in gateway.stderr().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    served = [line for line in lines if line.get("path", "").startswith("/api/1.4/")]
    by_path = {line["path"]: line for line in served}
    page = by_path["/api/1.4/patches/?per_page=5"]
    assert page["status"] == 200 and page["method"] == "GET"
    assert page["route"] == "/api/{version}/patches/"
    assert page["bytes"] > 0 and page["ms"] >= 0 and page["identified"] is False
    users = by_path["/api/1.4/users/"]
    assert users["identified"] is True and users["status"] == 200
    assert by_path["/api/1.4/nothing/"]["route"] == "unmatched"
    secret = auth_header("stephen")["Authorization"].split(" ", 1)[1]
    assert secret not in gateway.stderr()


def test_the_sync_logs_a_line_per_step(deployment, tmp_path):
    from tests.support import run_cli

    mirror = copy_mirror(deployment.storage, tmp_path / "m.sqlite3")
    config = write_config(
        tmp_path / "c.toml",
        deployment.upstream,
        mirror,
        free_port(),
        level="info",
        log_format="json",
    )
    result = run_cli("sync", "--config", str(config), "--once", timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    steps = [line for line in lines if "step" in line]
    polls = [line for line in steps if line["step"] == "event poll"]
    sweeps = [line for line in steps if line["step"] == "sweep"]
    assert len(polls) >= 2  # before and after the sweep round
    assert all(isinstance(p["applied"], int) and p["seconds"] >= 0 for p in polls)
    assert sweeps and all(s["lane"] and s["page"] >= 1 for s in sweeps)


def test_undecodable_header_bytes_still_make_one_json_line(deployment, tmp_path):
    import socket

    port = free_port()
    mirror = copy_mirror(deployment.storage, tmp_path / "m.sqlite3")
    config = write_config(
        tmp_path / "c.toml",
        deployment.upstream,
        mirror,
        port,
        server="access_log = true",
        level="info",
        log_format="json",
    )
    with GatewayProcess(config, port) as gateway:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(
                b"GET /api/1.2/projects/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                b"User-Agent: bad\xff\xfe\r\nConnection: close\r\n\r\n" % port
            )
            assert conn.recv(100).startswith(b"HTTP/1.1 200")
        request("GET", gateway.url + "/api/")  # (the line above is written by now)
    log = gateway.stderr()
    assert "Logging error" not in log
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    (line,) = [x for x in lines if x.get("path") == "/api/1.2/projects/"]
    assert line["status"] == 200 and line["user_agent"].startswith("bad")
