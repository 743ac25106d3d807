"""The ``patchwork-gateway`` command: its arguments, and which module runs
each command.

``run`` serves the mirror and keeps it in sync (the sync worker in a child
process) and ``serve`` only serves (``cli.serving``); ``sync`` only syncs
(``--once``: bring the mirror up to date and exit; ``cli.syncing``);
``status`` says how big and fresh it is (``cli.status``); ``check``
compares the mirror with upstream (``cli.check``); ``backup`` copies it
consistently while it serves and syncs (``cli.storage``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import logging
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

from cli import check as drift
from cli import demo, status, storage
from cli.config import Config, ConfigError, load
from cli.serving import CannotServe, serve
from cli.supervisor import SUPERVISOR_ENV
from cli.syncing import sync
from gateway.ops import logs, metrics
from mirror import schema
from mirror.control import Busy
from sync.service import SyncError, UpstreamError, describe_failure

log = logging.getLogger("patchwork-gateway")

#: What ``--help`` says first (the docstring above is for this file's readers).
SUMMARY = (
    "Serve a Patchwork instance's REST API from a local SQLite mirror, "
    "and keep the mirror in sync with it."
)


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
    p_status.add_argument(
        "--config", help="TOML configuration file (default: the demo `serve` runs without one)"
    )
    p_status.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    p_check = command(
        "check",
        "compare the mirror with upstream: exit 1 on drift",
        epilog=drift.DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    drift.add_arguments(p_check)
    p_backup = command("backup", "copy the mirror consistently, while it serves and syncs")
    p_backup.add_argument(
        "--config", help="TOML configuration file (default: the demo `serve` runs without one)"
    )
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
        storage.check_storage(config.storage.path)
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
    mirror = storage.served_mirror(config)
    if args.command == "check":
        return drift.main(config, args)
    if args.command == "status":
        return status.show(config, mirror, args.json)
    if args.command == "backup":
        return storage.copy(mirror, args.destination)
    # (A start that cannot succeed fails before it makes any file.)
    return _keep_or_serve(config, args)


def _keep_or_serve(config: Config, args: argparse.Namespace) -> int:
    """``sync``, ``serve`` or ``run``; the exit status."""
    try:
        if args.command == "sync":
            asyncio.run(sync(config, args.once))
        else:
            serve(config, with_sync=args.command == "run")
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
