"""``serve`` and ``run``: bind the socket first, then start the app, its
child processes (the sync worker under ``run``, extra server processes
with ``[server] workers``) and uvloop where it is installed."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator

from aiohttp import web

from cli import demo
from cli.config import WILDCARD, Config
from cli.supervisor import PORT_ENV, SUPERVISOR_ENV, server_process, sync_process
from gateway.http import protocol
from gateway.http.access_log import AccessLogger
from gateway.http.app import create_app
from gateway.ops import metrics
from mirror.control import Control

log = logging.getLogger("patchwork-gateway")


class CannotServe(Exception):
    """The listening socket could not be made (the port is taken, say)."""


async def _exit_when_orphaned() -> None:
    """An extra server process stops when the first one is gone."""
    parent = int(os.environ[SUPERVISOR_ENV])
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log.warning("the first server process is gone; stopping")
    os.kill(os.getpid(), signal.SIGTERM)  # run_app's graceful shutdown


def _listen(host: str, port: int, shared: bool = False) -> list[socket.socket]:
    """The listening sockets, bound before anything starts (aiohttp would
    start the app, and its children, first): one per address ``host``
    names (``localhost``: 127.0.0.1 and ::1, as aiohttp binds them);
    ``shared`` by several server processes (``SO_REUSEPORT``)."""
    name = host.strip("[]") or None
    socks: list[socket.socket] = []
    try:
        found = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        addresses = list(dict.fromkeys((family, address[:2]) for family, *_, address in found))
        if name is None:  # every interface: one socket, IPv4 (as before)
            addresses = [a for a in addresses if a[0] == socket.AF_INET][:1] or addresses[:1]
        for family, (address, _) in addresses:
            # (Port 0: the others take the port the first one got.)
            chosen = socks[0].getsockname()[1] if socks else port
            sock = socket.create_server(
                (address, chosen), family=family, reuse_port=shared, backlog=1024
            )
            sock.setblocking(False)
            socks.append(sock)
    except OSError as exc:
        for sock in socks:
            sock.close()
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise CannotServe(f"cannot serve on {host}:{port}: {why}") from None
    return socks


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (about a third more requests per second)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(config: Config, with_sync: bool = False) -> None:
    """Serve until stopped; ``with_sync``: ``run``, keeping the mirror in
    sync in a child process."""
    extra_port = os.environ.get(PORT_ENV)
    cleanup_metrics = None
    is_extra = extra_port is not None and SUPERVISOR_ENV in os.environ
    host, port = config.server.host, config.server.port
    if is_extra:
        assert extra_port is not None
        socks = _listen(host, int(extra_port), shared=True)
    else:
        socks = _listen(host, port, shared=config.server.workers > 1)
        port = socks[0].getsockname()[1]  # (port 0: the one the system chose)
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
            sock=socks,
            print=None,
            access_log=access_log,
            access_log_class=AccessLogger,
            loop=_event_loop(),
        )
    finally:
        for sock in socks:
            sock.close()
        if cleanup_metrics is not None:
            cleanup_metrics()
