"""Shared fixtures: a replay upstream, a mirror synced from it, a gateway."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.config import parse
from gateway.http.app import create_app
from mirror.control import Control
from mirror.reader import Reader
from tests.support import (
    CONFORMANCE,
    CRAWL,
    OTHER_CASES,
    OTHER_CRAWL,
    GatewayProcess,
    copy_mirror,
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
    #: What the gateway process has logged so far.
    log: Callable[[], str]


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
            yield Deployment(
                upstream.url, gateway.url, config, storage, seconds, requests, gateway.stderr
            )


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The recorded instance, mirrored and served."""
    yield from _deploy(tmp_path_factory.mktemp("deployment"))


@pytest.fixture(scope="session")
def other_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Another instance (other data, its own states), mirrored and served."""
    yield from _deploy(tmp_path_factory.mktemp("other"), OTHER_CRAWL, OTHER_CASES)


@pytest.fixture
async def gateway(deployment, tmp_path, aiohttp_client):
    """An in-process gateway on a private copy of the mirror; upstream down."""
    mirror = copy_mirror(deployment.storage, tmp_path / "mirror.sqlite3")
    dead = f"http://127.0.0.1:{free_port()}"
    config = parse(
        {
            "upstream": {"url": dead, "timeout": 5},
            "storage": {"path": str(mirror)},
            "server": {"refresh_interval": 0.05},
        }
    )
    reader = Reader(mirror)
    await reader.open(config.server.refresh_interval)
    client = await aiohttp_client(create_app(config.gateway, reader))
    client.mirror = mirror
    client.upstream = dead
    yield client
    await reader.close()


@pytest.fixture
async def make_gateway(deployment, tmp_path, aiohttp_client):
    """``await make(upstream_url, token="", control=False, **server)``: an
    in-process gateway on a private copy of the mirror, with these
    ``[server]`` settings (and the mirror's control file, with ``control``)."""
    readers: list[Reader] = []

    async def make(upstream: str, token: str = "", control: bool = False, **server: object):
        mirror = copy_mirror(deployment.storage, tmp_path / f"m{len(readers)}.sqlite3")
        config = parse(
            {
                "upstream": {"url": upstream, "token": token, "timeout": 10},
                "storage": {"path": str(mirror)},
                "server": {"refresh_interval": 0.05, **server},
            }
        )
        reader = Reader(mirror)
        await reader.open(config.server.refresh_interval)
        readers.append(reader)
        app = create_app(config.gateway, reader, control=Control(mirror) if control else None)
        client = await aiohttp_client(app)
        client.mirror = mirror
        return client

    yield make
    for reader in readers:
        await reader.close()


@pytest.fixture
def offline_gateway(deployment, tmp_path):
    """A gateway on a copy of the mirror whose upstream is gone."""
    port = free_port()
    mirror = copy_mirror(deployment.storage, tmp_path / "offline.sqlite3")
    dead = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "offline.toml", dead, mirror, port)
    with GatewayProcess(config, port) as gateway:
        yield gateway
