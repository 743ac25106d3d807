"""The ``patchwork-gateway`` command: ``run``, ``sync``, ``serve``, ``status``,
``check`` and ``backup``.

``run`` serves the mirror and keeps it in sync (the sync worker in a child
process); ``sync`` only syncs (``--once``: bring the mirror up to date and
exit); ``serve`` only serves; ``status`` says how big and fresh it is;
``check`` compares the mirror with upstream (see ``gateway.drift``);
``backup`` copies it consistently while it serves and syncs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sqlite3
import sys
from pathlib import Path

from aiohttp import web

from gateway import demo, drift, logs, metrics
from gateway.app import create_app
from gateway.config import WILDCARD, Config, ConfigError, load
from gateway.reader import Reader
from gateway.status import SyncStatus, mirror_bytes
from gateway.supervisor import PORT_ENV, SUPERVISOR_ENV, server_process, sync_process
from mirror import schema
from mirror.backup import BackupError, backup
from mirror.control import Busy, Control, claim
from sync.events import CURSOR
from sync.fetch import SyncError
from sync.progress import Progress
from sync.upstream import Upstream, UpstreamError
from sync.worker import Settings, Worker

log = logging.getLogger("patchwork-gateway")


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


async def _exit_when_orphaned() -> None:
    """An extra server process stops when the first one is gone."""
    parent = int(os.environ[SUPERVISOR_ENV])
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log.warning("the first server process is gone; stopping")
    os.kill(os.getpid(), signal.SIGTERM)  # run_app's graceful shutdown


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket of one of several server processes."""
    sock = socket.create_server(
        (host.strip("[]") or "0.0.0.0", port),
        family=socket.AF_INET6 if ":" in host else socket.AF_INET,
        reuse_port=True,
        backlog=1024,
    )
    sock.setblocking(False)
    return sock


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (about a third more requests per second)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _serve(config: Config, with_sync: bool = False) -> None:
    extra_port = os.environ.get(PORT_ENV)
    cleanup_metrics = None
    is_extra = extra_port is not None and SUPERVISOR_ENV in os.environ
    host, port = config.server.host, config.server.port
    sock = None
    if is_extra:
        assert extra_port is not None
        sock = _listen(host, int(extra_port))
    elif config.server.workers > 1:
        sock = _listen(host, port)
        port = sock.getsockname()[1]
    if not is_extra and (config.server.workers > 1 or metrics.MULTIPROC_ENV in os.environ):
        # Before any process counts: /metrics sums every process's files.
        cleanup_metrics = metrics.prepare_multiprocess()

    async def make_app() -> web.Application:
        path = config.storage.path
        is_demo = not config.upstream.url
        if is_demo:
            path = await demo.build(path)
            if not is_extra:
                log.warning(
                    "no [upstream] url configured: serving the DEMO mirror %s built from a "
                    "recorded instance; set [upstream] url and run `patchwork-gateway sync` "
                    "for real data",
                    path,
                )
        elif not path.exists() and not is_extra:
            log.warning("mirror %s does not exist yet; serving it empty until a sync runs", path)
        reader = Reader(path, cache_bytes=config.server.mirror_cache_bytes)
        await reader.open(config.server.refresh_interval)
        control = Control(path)
        app = create_app(config, reader, demo=is_demo, control=control)
        children = []
        if not is_extra:
            if with_sync and config.source:
                children.append(sync_process(config.source))
            for number in range(2, config.server.workers + 1):
                children.append(server_process(config.source, number, port))
        orphan_watch: list[asyncio.Task[None]] = []

        async def start_children(app: web.Application) -> None:
            for child in children:
                child.start()
            if is_extra:
                orphan_watch.append(asyncio.create_task(_exit_when_orphaned()))

        async def close_reader(app: web.Application) -> None:
            for task in orphan_watch:
                task.cancel()
            for child in children:
                await child.stop()
            await reader.close()
            control.close()

        app.on_startup.append(start_children)

        async def announce(app: web.Application) -> None:
            if is_extra:
                return
            processes = f" ({config.server.workers} processes)" if sock is not None else ""
            log.info("serving the Patchwork API on http://%s:%d/api/%s", host, port, processes)
            if host.strip("[]") in WILDCARD and not config.server.public_url:
                log.warning(
                    "answering only Host %s: set [server] allowed_hosts or public_url "
                    "for the names clients use",
                    ", ".join(config.server.allowed_hosts),
                )

        app.on_cleanup.append(close_reader)
        app.on_startup.append(announce)
        return app

    access_log = logging.getLogger("aiohttp.access") if config.server.access_log else None
    try:
        web.run_app(
            make_app(),
            host=None if sock else host,
            port=None if sock else port,
            sock=sock,
            print=None,
            access_log=access_log,
            access_log_class=logs.AccessLogger,
            loop=_event_loop(),
        )
    finally:
        if cleanup_metrics is not None:
            cleanup_metrics()


async def _status(config: Config, as_json: bool) -> str:
    """``status``: the mirror's size, counts, last sync, lag, cursor, last error."""
    path = config.storage.path
    reader = Reader(path, connections=1, cache_bytes=16 << 20)
    await reader.open(3600)
    control = Control(path)
    try:
        document = await SyncStatus(control, reader).document(config.upstream.url, "mirror")
        document["cursor"] = reader.meta(CURSOR)
    finally:
        await reader.close()
        control.close()
    size = mirror_bytes(path)
    document["mirror"] = {"path": str(path), "bytes": size}
    if as_json:
        return json.dumps(document, indent=2)
    sync = document["sync"]
    error = sync.get("last_error")
    if isinstance(error, dict):
        error = "; ".join(f"{part}: {what}" for part, what in error.items())
    lines = [
        f"mirror      {path} ({size / 2**20:,.1f} MiB)",
        f"upstream    {document['upstream'] or 'none (demo)'}",
        f"initial     {document['initial_sync']}",
        f"last synced {sync.get('last_success') or 'never'}"
        + (f" ({sync['lag_seconds']:,.0f} s ago)" if sync.get("lag_seconds") is not None else ""),
        f"cursor      {document['cursor'] or 'none'}",
        f"last error  {error or 'none'}",
        "objects     "
        + ", ".join(f"{name} {count:,}" for name, count in document["counts"].items()),
    ]
    return "\n".join(lines)


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
    p_status = sub.add_parser("status", help="how big and how fresh the mirror is")
    p_status.add_argument("--config", required=True, help="TOML configuration file")
    p_status.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    p_check = sub.add_parser(
        "check",
        help="compare the mirror with upstream: exit 1 on drift",
        description=drift.DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    drift.add_arguments(p_check)
    p_backup = sub.add_parser(
        "backup", help="copy the mirror consistently, while it serves and syncs"
    )
    p_backup.add_argument("--config", required=True, help="TOML configuration file")
    p_backup.add_argument(
        "destination",
        help="the copy's file (replaced if it exists), or a folder (with a trailing slash, "
        "created if need be)",
    )
    args = parser.parse_args(argv)

    try:
        config = load(args.config)
        if args.command in ("sync", "run", "check") and not config.upstream.url:
            raise ConfigError(f"[upstream] url: required to {args.command}")
        _check_storage(config.storage.path)
    except ConfigError as exc:
        message = str(exc)
        if args.config and not message.startswith(str(Path(args.config))):
            message = f"{args.config}: {message}"  # which file, too
        print(f"config error: {message}", file=sys.stderr)
        return 2

    logs.setup(config.log_level, config.log_format)
    if args.command == "check":
        return drift.main(config, args)
    if args.command == "backup":
        try:
            copy, size = backup(config.storage.path, args.destination)
        except BackupError as exc:
            print(f"backup failed: {exc}", file=sys.stderr)
            return 1
        print(f"{copy}: {size / 2**20:,.1f} MiB, a consistent copy of the mirror")
        return 0
    try:
        if args.command == "sync":
            asyncio.run(_sync(config, args.once))
        elif args.command == "status":
            if not config.storage.path.exists():
                print(f"{config.storage.path}: no mirror yet (run `sync`)", file=sys.stderr)
                return 1
            print(asyncio.run(_status(config, args.json)))
        else:
            _serve(config, with_sync=args.command == "run")
    except (
        SyncError,
        UpstreamError,
        Busy,
        schema.SchemaTooNew,
        schema.LayoutMismatch,
        demo.DemoMissing,
        metrics.MetricsFolderError,
    ) as exc:
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
