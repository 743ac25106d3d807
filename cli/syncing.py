"""``sync``: keep the mirror in sync with upstream (``--once``: bring it up
to date and exit), alone or as the sync worker ``run`` starts."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from cli.config import Config
from cli.supervisor import SUPERVISOR_ENV
from sync.service import Settings, UpstreamSettings, follow

log = logging.getLogger("patchwork-gateway")


async def sync(config: Config, once: bool) -> None:
    """Sync until done (``once``) or stopped: SIGTERM, or the server that
    started this worker gone."""
    upstream = config.upstream
    settings = Settings(
        poll_interval=config.sync.poll_interval,
        budget=config.sync.sweep_budget,
        interval=config.sync.sweep_interval,
        hot_interval=config.sync.hot_interval,
        overlap=config.sync.event_overlap,
        concurrency=upstream.concurrency,
        changes_days=config.storage.change_log_days,
        changes_rows=config.storage.change_log_rows,
    )
    where = UpstreamSettings(
        upstream.url,
        upstream.token,
        upstream.concurrency,
        upstream.timeout,
        config.server.replication_token,
    )
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    orphaned = asyncio.create_task(_stop_when_orphaned(task))
    try:
        await follow(config.storage.path, where, settings, once=once)
    except asyncio.CancelledError:
        log.info("sync worker stopped")
    finally:
        orphaned.cancel()
        loop.remove_signal_handler(signal.SIGTERM)


async def _stop_when_orphaned(task: asyncio.Task[None]) -> None:
    """Under `run`, stop when the server is gone (even killed outright)."""
    parent = os.environ.get(SUPERVISOR_ENV)
    if not parent:
        return
    while os.getppid() == int(parent):
        await asyncio.sleep(1.0)
    log.warning("the server that started this sync worker is gone; stopping")
    task.cancel()
