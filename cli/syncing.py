"""``sync``: keep the mirror in sync with upstream (``--once``: bring it up
to date and exit), alone or as the sync worker ``run`` starts."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from cli.config import Config
from cli.supervisor import SUPERVISOR_ENV
from mirror import schema
from mirror.control import Control, claim
from sync.progress import Progress
from sync.upstream import Upstream
from sync.worker import Settings, Worker

log = logging.getLogger("patchwork-gateway")


async def sync(config: Config, once: bool) -> None:
    """Sync until done (``once``) or stopped: SIGTERM, or the server that
    started this worker gone."""
    upstream = Upstream(
        config.upstream.url,
        config.upstream.token,
        concurrency=config.upstream.concurrency,
        timeout=config.upstream.timeout,
        # Following: fail fast and let the worker back off and try again.
        attempts=6 if once else 3,
        max_backoff=60.0 if once else 10.0,
        say_retries=once,  # (following, the worker says it as it backs off)
    )
    settings = Settings(
        poll_interval=config.sync.poll_interval,
        budget=config.sync.sweep_budget,
        interval=config.sync.sweep_interval,
        hot_interval=config.sync.hot_interval,
        overlap=config.sync.event_overlap,
        concurrency=config.upstream.concurrency,
    )
    claimed = claim(config.storage.path)
    db = await schema.connect(config.storage.path)
    control = Control(config.storage.path)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    orphaned = asyncio.create_task(_stop_when_orphaned(task))
    try:
        worker = Worker(db, upstream, config.upstream.url, control, settings, progress=Progress())
        if once:
            await worker.once()
            log.info(
                "sync complete: %d upstream requests in all, %d events applied",
                worker.fetcher.requests + worker.crawl_requests,
                worker.applied,
            )
        else:
            log.info("following %s", config.upstream.url)
            await worker.run()
    except asyncio.CancelledError:
        log.info("sync worker stopped")
    finally:
        orphaned.cancel()
        loop.remove_signal_handler(signal.SIGTERM)
        await upstream.close()
        await db.close()
        control.close()
        claimed.close()


async def _stop_when_orphaned(task: asyncio.Task[None]) -> None:
    """Under `run`, stop when the server is gone (even killed outright)."""
    parent = os.environ.get(SUPERVISOR_ENV)
    if not parent:
        return
    while os.getppid() == int(parent):
        await asyncio.sleep(1.0)
    log.warning("the server that started this sync worker is gone; stopping")
    task.cancel()
