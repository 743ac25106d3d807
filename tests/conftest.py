"""Shared fixtures: a replay upstream, a mirror synced from it, a gateway."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import (
    GatewayProcess,
    free_port,
    replay_upstream,
    run_cli,
    tokens,
    write_config,
)


@dataclass
class Deployment:
    upstream: str
    gateway: str
    config: Path
    storage: Path
    sync_seconds: float
    upstream_requests: int


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Replay upstream -> `sync --once` (subprocess) -> `serve` (subprocess)."""
    import time

    tmp = tmp_path_factory.mktemp("deployment")
    counter = [0]
    with replay_upstream(counter) as upstream:
        port = free_port()
        storage = tmp / "mirror.sqlite3"
        config = write_config(
            tmp / "config.toml", upstream.url, storage, port, token=tokens()["cibot"]
        )
        started = time.monotonic()
        result = run_cli("sync", "--config", str(config), "--once")
        seconds = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        requests = counter[0]
        with GatewayProcess(config, port) as gateway:
            yield Deployment(upstream.url, gateway.url, config, storage, seconds, requests)
