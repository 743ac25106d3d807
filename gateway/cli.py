"""The ``patchwork-gateway`` command: ``sync`` and ``serve``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sqlite3
import sys
from pathlib import Path

from aiohttp import web

from gateway import demo
from gateway.app import create_app
from gateway.config import Config, ConfigError, load
from gateway.reader import Reader
from mirror import schema
from sync.crawler import Crawler, SyncError
from sync.progress import Progress
from sync.upstream import Upstream, UpstreamError

log = logging.getLogger("patchwork-gateway")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


async def _sync_once(config: Config) -> None:
    upstream = Upstream(
        config.upstream.url,
        config.upstream.token,
        concurrency=config.upstream.concurrency,
        timeout=config.upstream.timeout,
    )
    db = await schema.connect(config.storage.path)
    try:
        crawler = Crawler(
            db,
            upstream,
            config.upstream.url,
            concurrency=config.upstream.concurrency,
            progress=Progress(),
        )
        report = await crawler.run()
    finally:
        await upstream.close()
        await db.close()
    log.info(
        "sync complete: %d requests, %d objects written, %d deleted, %.1fs%s",
        report.requests,
        report.objects,
        report.deleted,
        report.seconds,
        f"; not visible to the sync identity: {', '.join(report.skipped)}"
        if report.skipped
        else "",
    )


def _serve(config: Config) -> None:
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
        reader = Reader(path)
        await reader.open(config.server.refresh_interval)
        app = create_app(config, reader, demo=is_demo)

        async def close_reader(app: web.Application) -> None:
            await reader.close()

        async def announce(app: web.Application) -> None:
            log.info("serving the Patchwork API on http://%s:%d/api/", host, port)

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
    p_sync = sub.add_parser("sync", help="mirror the upstream into the SQLite file")
    p_sync.add_argument("--config", required=True, help="TOML configuration file")
    p_sync.add_argument("--once", action="store_true", help="one full pass, then exit")
    p_serve = sub.add_parser("serve", help="serve the API from the mirror")
    p_serve.add_argument("--config", help="TOML configuration file (default: demo settings)")
    args = parser.parse_args(argv)

    try:
        config = load(args.config)
        if args.command == "sync":
            if not config.upstream.url:
                raise ConfigError("[upstream] url: required to sync")
            if not args.once:
                raise ConfigError(
                    "sync: continuous sync is not available yet; run `sync --once` "
                    "(for example from a timer) to refresh the mirror"
                )
        _check_storage(config.storage.path)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2

    _setup_logging(config.log_level)
    try:
        if args.command == "sync":
            asyncio.run(_sync_once(config))
        else:
            _serve(config)
    except (SyncError, UpstreamError, schema.SchemaTooNew, schema.LayoutMismatch) as exc:
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
