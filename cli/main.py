"""The ``patchwork-gateway`` command: ``run``, ``sync``, ``serve``, ``status``,
``check`` and ``backup``.

``run`` serves the mirror and keeps it in sync (the sync worker in a child
process); ``sync`` only syncs (``--once``: bring the mirror up to date and
exit); ``serve`` only serves; ``status`` says how big and fresh it is;
``check`` compares the mirror with upstream (see ``cli.check``);
``backup`` copies it consistently while it serves and syncs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.metadata
import json
import logging
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from cli import check as drift
from cli import demo
from cli.config import WILDCARD, Config, ConfigError, load
from cli.supervisor import PORT_ENV, SUPERVISOR_ENV, server_process, sync_process
from gateway.http import protocol
from gateway.http.app import create_app
from gateway.ops import logs, metrics
from gateway.ops.status import SyncStatus, mirror_bytes
from mirror import schema
from mirror.backup import BackupError, backup
from mirror.control import Busy, Control, claim, control_path, lock_path
from mirror.files import remove_created
from mirror.reader import Reader
from mirror.resources import RESOURCES
from sync.events import CURSOR
from sync.fetch import SyncError
from sync.progress import Progress
from sync.upstream import Upstream, UpstreamError, describe_failure
from sync.worker import Settings, Worker

log = logging.getLogger("patchwork-gateway")

#: What ``--help`` says first (the docstring above is for this file's readers).
SUMMARY = (
    "Serve a Patchwork instance's REST API from a local SQLite mirror, "
    "and keep the mirror in sync with it."
)


class CannotServe(Exception):
    """The listening socket could not be made (the port is taken, say)."""


async def _sync(config: Config, once: bool) -> None:
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


async def _exit_when_orphaned() -> None:
    """An extra server process stops when the first one is gone."""
    parent = int(os.environ[SUPERVISOR_ENV])
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log.warning("the first server process is gone; stopping")
    os.kill(os.getpid(), signal.SIGTERM)  # run_app's graceful shutdown


def _listen(host: str, port: int, shared: bool = False) -> socket.socket:
    """The listening socket, bound before anything starts (aiohttp would
    start the app, and its children, first); ``shared`` by several server
    processes (``SO_REUSEPORT``)."""
    try:
        sock = socket.create_server(
            (host.strip("[]") or "0.0.0.0", port),
            family=socket.AF_INET6 if ":" in host else socket.AF_INET,
            reuse_port=shared,
            backlog=1024,
        )
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise CannotServe(f"cannot serve on {host}:{port}: {why}") from None
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
    if is_extra:
        assert extra_port is not None
        sock = _listen(host, int(extra_port), shared=True)
    else:
        sock = _listen(host, port, shared=config.server.workers > 1)
        port = sock.getsockname()[1]  # (port 0: the one the system chose)
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
        control = Control(path)
        settings = dataclasses.replace(config.gateway, mirror=path)
        app = create_app(settings, demo=is_demo, control=control)
        children = []
        if not is_extra:
            if with_sync and config.source:
                children.append(sync_process(config.source))
            for number in range(2, config.server.workers + 1):
                children.append(server_process(config.source, number, host, port))

        def announce() -> None:
            if is_extra:
                return
            workers = config.server.workers
            processes = f" ({workers} processes)" if workers > 1 else ""
            shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
            log.info("serving the Patchwork API on http://%s:%d/api/%s", shown, port, processes)
            if host.strip("[]") in WILDCARD and not config.server.public_url:
                log.warning(
                    "answering only Host %s: set [server] allowed_hosts or public_url "
                    "for the names clients use",
                    ", ".join(config.server.allowed_hosts),
                )

        async def processes(app: web.Application) -> AsyncIterator[None]:
            """Listening already: say so, then start the sync worker and the
            extra server processes (in one of those: watch the first); stop
            them, and close the control file, on the way out."""
            announce()
            watch = asyncio.create_task(_exit_when_orphaned()) if is_extra else None
            for child in children:
                child.start()
            yield
            if watch is not None:
                watch.cancel()
            for child in children:
                await child.stop()
            control.close()

        app.cleanup_ctx.append(processes)
        return app

    protocol.install()  # (malformed HTTP: a short 400, one log line)
    access_log = logging.getLogger("aiohttp.access") if config.server.access_log else None
    try:
        web.run_app(
            make_app(),
            sock=sock,
            print=None,
            access_log=access_log,
            access_log_class=logs.AccessLogger,
            loop=_event_loop(),
        )
    finally:
        sock.close()
        if cleanup_metrics is not None:
            cleanup_metrics()


async def _status(config: Config, mirror: Path) -> dict[str, Any]:
    """``status --json``: the mirror's size, counts, last sync, lag, cursor,
    last error, and whether a sync worker runs."""
    is_demo = not config.upstream.url
    reader = Reader(mirror, connections=1, cache_bytes=16 << 20)
    await reader.open(3600)
    # (Looking must not create a control file.)
    control = Control(mirror) if control_path(mirror).exists() else None
    try:
        status = SyncStatus(control, reader)
        document = await status.document(config.upstream.url, "demo" if is_demo else "mirror")
        document["cursor"] = reader.meta(CURSOR)
    finally:
        await reader.close()
        if control is not None:
            control.close()
    document["mirror"] = {"path": str(mirror), "exists": True, "bytes": mirror_bytes(mirror)}
    return document


def _status_text(document: dict[str, Any]) -> str:
    mirror, sync = document["mirror"], document["sync"]
    error = sync.get("last_error")
    if isinstance(error, dict):
        error = "; ".join(f"{part}: {what}" for part, what in error.items())
    if document["mode"] == "demo":
        synced = f"none (a demo built {sync.get('last_success') or '?'} from a recording)"
        worker = "none (demo)"
    else:
        synced = (sync.get("last_success") or "never") + (
            f" ({sync['lag_seconds']:,.0f} s ago)" if sync.get("lag_seconds") is not None else ""
        )
        worker = (
            f"{sync.get('state') or 'running'} (pid {sync.get('pid', '?')})"
            if sync["running"]
            else "not running"
        )
    lines = [
        f"mirror      {mirror['path']} ({mirror['bytes'] / 2**20:,.1f} MiB)",
        f"upstream    {document['upstream'] or 'none (demo)'}",
        f"initial     {document['initial_sync']}",
        f"sync worker {worker}",
        f"last synced {synced}",
        f"cursor      {document['cursor'] or 'none'}",
        f"last error  {error or 'none'}",
        "objects     "
        + ", ".join(f"{name} {count:,}" for name, count in document["counts"].items()),
    ]
    return "\n".join(lines)


def _show_status(config: Config, mirror: Path, as_json: bool) -> int:
    is_demo = not config.upstream.url
    if not mirror.exists():
        problem = (
            "no demo mirror yet (`serve` builds it)" if is_demo else "no mirror yet (run `sync`)"
        )
    else:
        try:
            document = asyncio.run(_status(config, mirror))
        except (schema.SchemaTooNew, schema.LayoutMismatch, sqlite3.DatabaseError) as exc:
            problem = str(exc)
        else:
            print(json.dumps(document, indent=2) if as_json else _status_text(document))
            return 0
    if as_json:  # (scripts get JSON whatever happens)
        unknown = {
            "mirror": {"path": str(mirror), "exists": mirror.exists(), "problem": problem},
            "upstream": config.upstream.url or None,
            "mode": "demo" if is_demo else "mirror",
        }
        print(json.dumps(unknown, indent=2))
    else:
        print(f"{mirror}: {problem}", file=sys.stderr)
    return 1


def _served_mirror(config: Config) -> Path:
    """The mirror ``serve`` serves: the demo's without an upstream."""
    return config.storage.path if config.upstream.url else demo.demo_path(config.storage.path)


def _holds_nothing(mirror: Path) -> bool:
    """Whether ``mirror`` has no mirrored object (a failed start's)."""
    if not mirror.exists() or mirror.stat().st_size == 0:
        return True
    try:
        db = sqlite3.connect(mirror.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        if not db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
            return True
        for res in RESOURCES.values():
            if db.execute(f"SELECT 1 FROM {res.table} LIMIT 1").fetchone():
                return False
    except sqlite3.Error:
        return False  # (not a mirror of ours: not ours to remove)
    finally:
        db.close()
    return True


def _check_storage(path: Path) -> None:
    """The mirror's folder must exist and be writable (SQLite adds files)."""
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(f"[storage] path: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"[storage] path: folder {folder} is not writable")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise ConfigError(f"[storage] path: {path} is not readable and writable")


def _version() -> str:
    try:
        return importlib.metadata.version("patchwork-gateway")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    version = f"patchwork-gateway {_version()}"
    parser = argparse.ArgumentParser(prog="patchwork-gateway", description=SUMMARY)
    parser.add_argument("--version", action="version", version=version)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, **more: Any) -> argparse.ArgumentParser:
        described = summary[0].upper() + summary[1:] + "."
        made = sub.add_parser(name, help=summary, description=described, **more)
        made.add_argument("--version", action="version", version=version)
        return made

    def listening(made: argparse.ArgumentParser) -> None:
        made.add_argument("--host", help="address to listen on (instead of [server] host)")
        made.add_argument(
            "--port", type=_port, help="port to listen on (instead of [server] port; 0: any)"
        )

    p_run = command("run", "serve the API and keep the mirror in sync")
    p_run.add_argument("--config", required=True, help="TOML configuration file")
    listening(p_run)
    p_sync = command("sync", "keep the SQLite mirror in sync with upstream (no serving)")
    p_sync.add_argument("--config", required=True, help="TOML configuration file")
    p_sync.add_argument(
        "--once", action="store_true", help="bring the mirror up to date, then exit"
    )
    p_serve = command("serve", "serve the API from the mirror (a demo mirror without an upstream)")
    p_serve.add_argument("--config", help="TOML configuration file (default: demo settings)")
    listening(p_serve)
    p_status = command("status", "how big and how fresh the mirror is")
    p_status.add_argument("--config", required=True, help="TOML configuration file")
    p_status.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    p_check = command(
        "check",
        "compare the mirror with upstream: exit 1 on drift",
        epilog=drift.DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    drift.add_arguments(p_check)
    p_backup = command("backup", "copy the mirror consistently, while it serves and syncs")
    p_backup.add_argument("--config", required=True, help="TOML configuration file")
    p_backup.add_argument(
        "destination",
        help="the copy's file (replaced if it exists), or a folder (with a trailing slash, "
        "created if need be)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code = _main(args)
        sys.stdout.flush()  # (here, where a closed pipe is caught)
        return code
    except BrokenPipeError:
        # Whoever read the output stopped (``status | head -1``): stop
        # quietly, as other tools do, with the status SIGPIPE would give.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _main(args: argparse.Namespace) -> int:
    listen = {key: getattr(args, key, None) for key in ("host", "port")}
    try:
        config = load(args.config, {"server": {k: v for k, v in listen.items() if v is not None}})
        if args.command in ("sync", "run") and not config.upstream.url:
            raise ConfigError(f"[upstream] url: required to {args.command}")
        if args.command == "check" and not config.upstream.url:
            raise ConfigError("[upstream] url: not set, so there is nothing to compare with")
        _check_storage(config.storage.path)
    except ConfigError as exc:
        message = str(exc)
        if args.config and not message.startswith(str(Path(args.config))):
            message = f"{args.config}: {message}"  # which file, too
        print(f"config error: {message}", file=sys.stderr)
        return 2

    logs.setup(config.log_level, config.log_format)
    if SUPERVISOR_ENV not in os.environ:  # (not again in each child process)
        for warning in config.warnings:
            log.warning("%s: %s", args.config, warning)
    mirror = _served_mirror(config)
    if args.command == "check":
        return drift.main(config, args)
    if args.command == "status":
        return _show_status(config, mirror, args.json)
    if args.command == "backup":
        try:
            copy, size = backup(mirror, args.destination)
        except BackupError as exc:
            print(f"backup failed: {exc}", file=sys.stderr)
            return 1
        print(f"{copy}: {size / 2**20:,.1f} MiB, a consistent copy of the mirror")
        return 0
    # A failed start leaves none of the files it made.
    made = [path for path in (mirror, control_path(mirror), lock_path(mirror)) if not path.exists()]
    code = _keep_or_serve(config, args)
    if code != 0 and made and _holds_nothing(mirror):
        remove_created(made)
    return code


def _keep_or_serve(config: Config, args: argparse.Namespace) -> int:
    """``sync``, ``serve`` or ``run``; the exit status."""
    try:
        if args.command == "sync":
            asyncio.run(_sync(config, args.once))
        else:
            _serve(config, with_sync=args.command == "run")
    except UpstreamError as exc:
        log.error("%s", describe_failure(config.upstream.url, exc) or exc)
        return 1
    except (
        CannotServe,
        SyncError,
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
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
