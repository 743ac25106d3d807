"""The ``patchwork-gateway`` command: ``run``, ``sync`` and ``serve``.

``run`` serves the mirror and keeps it in sync (the sync worker in a child
process); ``sync`` only syncs (``--once``: bring the mirror up to date and
exit); ``serve`` only serves.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sqlite3
import sys
from pathlib import Path

from aiohttp import web

from gateway import demo
from gateway.app import create_app
from gateway.config import WILDCARD, Config, ConfigError, load
from gateway.reader import Reader
from gateway.supervisor import SUPERVISOR_ENV, SyncProcess
from mirror import schema
from mirror.control import Busy, Control, claim
from sync.fetch import SyncError
from sync.progress import Progress
from sync.upstream import Upstream, UpstreamError
from sync.worker import Settings, Worker

log = logging.getLogger("patchwork-gateway")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


async def _sync(config: Config, once: bool) -> None:
    upstream = Upstream(
        config.upstream.url,
        config.upstream.token,
        concurrency=config.upstream.concurrency,
        timeout=config.upstream.timeout,
        # Following: fail fast and let the worker back off and try again.
        attempts=6 if once else 3,
        max_backoff=60.0 if once else 10.0,
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


def _serve(config: Config, with_sync: bool = False) -> None:
    async def make_app() -> web.Application:
        path = config.storage.path
        is_demo = not config.upstream.url
        if is_demo:
            path = await demo.build(path)
            log.warning(
                "no [upstream] url configured: serving the DEMO mirror %s built from the "
                "test fixtures; set [upstream] url and run `patchwork-gateway sync` for real data",
                path,
            )
        elif not path.exists():
            log.warning("mirror %s does not exist yet; serving it empty until a sync runs", path)
        reader = Reader(path, cache_bytes=config.server.mirror_cache_bytes)
        await reader.open(config.server.refresh_interval)
        control = Control(path)
        app = create_app(config, reader, demo=is_demo, control=control)
        worker = SyncProcess(config.source) if with_sync and config.source else None

        async def start_worker(app: web.Application) -> None:
            if worker is not None:
                worker.start()

        async def close_reader(app: web.Application) -> None:
            if worker is not None:
                await worker.stop()
            await reader.close()
            control.close()

        app.on_startup.append(start_worker)

        async def announce(app: web.Application) -> None:
            log.info("serving the Patchwork API on http://%s:%d/api/", host, port)
            if host.strip("[]") in WILDCARD and not config.server.public_url:
                log.warning(
                    "answering only Host %s: set [server] allowed_hosts or public_url "
                    "for the names clients use",
                    ", ".join(config.server.allowed_hosts),
                )

        app.on_cleanup.append(close_reader)
        app.on_startup.append(announce)
        return app

    host, port = config.server.host, config.server.port
    web.run_app(
        make_app(),
        host=host,
        port=port,
        print=None,
        access_log=logging.getLogger("aiohttp.access"),
    )


def _check_storage(path: Path) -> None:
    """The mirror's folder must exist and be writable (SQLite adds files)."""
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(f"[storage] path: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"[storage] path: folder {folder} is not writable")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise ConfigError(f"[storage] path: {path} is not readable and writable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="patchwork-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="serve the API and keep the mirror in sync")
    p_run.add_argument("--config", required=True, help="TOML configuration file")
    p_sync = sub.add_parser("sync", help="keep the SQLite mirror in sync with upstream")
    p_sync.add_argument("--config", required=True, help="TOML configuration file")
    p_sync.add_argument(
        "--once", action="store_true", help="bring the mirror up to date, then exit"
    )
    p_serve = sub.add_parser("serve", help="serve the API from the mirror")
    p_serve.add_argument("--config", help="TOML configuration file (default: demo settings)")
    args = parser.parse_args(argv)

    try:
        config = load(args.config)
        if args.command in ("sync", "run") and not config.upstream.url:
            raise ConfigError(f"[upstream] url: required to {args.command}")
        _check_storage(config.storage.path)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2

    _setup_logging(config.log_level)
    try:
        if args.command == "sync":
            asyncio.run(_sync(config, args.once))
        else:
            _serve(config, with_sync=args.command == "run")
    except (SyncError, UpstreamError, Busy, schema.SchemaTooNew, schema.LayoutMismatch) as exc:
        log.error("%s", exc)
        return 1
    except sqlite3.DatabaseError as exc:
        log.error("%s: %s", config.storage.path, exc)
        return 1
    except OSError as exc:  # the port is taken, say
        log.error("cannot serve on %s:%d: %s", config.server.host, config.server.port, exc)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
