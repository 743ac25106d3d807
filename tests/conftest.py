"""Shared fixtures: a replay upstream, a mirror synced from it, a gateway."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import (
    CONFORMANCE,
    CRAWL,
    OTHER_CASES,
    OTHER_CRAWL,
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


def _deploy(tmp: Path, crawl: Path = CRAWL, cases: Path = CONFORMANCE) -> Iterator[Deployment]:
    """Replay upstream -> `sync --once` (subprocess) -> `serve` (subprocess)."""
    counter = [0]
    with replay_upstream(counter, crawl, cases) as upstream:
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


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The recorded instance, mirrored and served."""
    yield from _deploy(tmp_path_factory.mktemp("deployment"))


@pytest.fixture(scope="session")
def other_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Another instance (other data, its own states), mirrored and served."""
    yield from _deploy(tmp_path_factory.mktemp("other"), OTHER_CRAWL, OTHER_CASES)
