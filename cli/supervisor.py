"""The server's child processes: the sync worker, and extra servers.

Under ``run`` the sync worker parses JSON, normalises and writes for as
long as upstream changes; in a process of its own it never takes the
server's event loop or its GIL.  With ``[server] workers`` above 1, the
extra server processes listen on the same port (``SO_REUSEPORT``: the
kernel spreads connections) and read the same mirror, each with caches of
its own, dropped as it sees the mirror change.

The first server process starts each child, restarts it if it dies
(backing off, up to a minute), and stops it on the way out; a child whose
parent is gone (killed outright) stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from gateway.ops import metrics

log = logging.getLogger(__name__)

#: Seconds a stopping worker gets before it is killed.
STOP_GRACE = 15.0
#: Tells a child which process to outlive not (see cli.serving, cli.syncing).
SUPERVISOR_ENV = "PATCHWORK_GATEWAY_SUPERVISOR"
#: Tells an extra server process the port the first one bound.
PORT_ENV = "PATCHWORK_GATEWAY_PORT"


class ChildProcess:
    """One ``patchwork-gateway`` subcommand, kept running."""

    def __init__(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.args = args
        self.env = env or {}
        self._task: asyncio.Task[None] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        backoff = 1.0
        while not self._stopping:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "cli.main",
                *self.args,
                env={**os.environ, **self.env, SUPERVISOR_ENV: str(os.getpid())},
            )
            log.info("%s started (pid %d)", self.name, self._proc.pid)
            code = await self._proc.wait()
            metrics.process_gone(self._proc.pid)
            if self._stopping:
                return
            log.error("%s exited with status %d; restarting in %.0fs", self.name, code, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 60.0)

    async def stop(self) -> None:
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_GRACE)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def sync_process(config: Path) -> ChildProcess:
    return ChildProcess("sync worker", ["sync", "--config", str(config)])


def server_process(config: Path | None, number: int, host: str, port: int) -> ChildProcess:
    """Server process ``number`` (from 2), on the address the first one bound
    (which ``--host`` may have chosen)."""
    args = ["serve", *(["--config", str(config)] if config else []), "--host", host]
    return ChildProcess(f"server process {number}", args, {PORT_ENV: str(port)})
