"""``run``: the sync worker as a child process of the server.

The worker parses JSON, normalises and writes for as long as upstream
changes; in a process of its own it never takes the server's event loop
or its GIL.  The server starts it, restarts it if it dies (backing off,
up to a minute), and stops it on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

log = logging.getLogger(__name__)

#: Seconds a stopping worker gets before it is killed.
STOP_GRACE = 15.0
#: Tells the worker which process to outlive not (see gateway.cli).
SUPERVISOR_ENV = "PATCHWORK_GATEWAY_SUPERVISOR"


class SyncProcess:
    def __init__(self, config: Path) -> None:
        self.config = config
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
                "gateway.cli",
                "sync",
                "--config",
                str(self.config),
                env={**os.environ, SUPERVISOR_ENV: str(os.getpid())},
            )
            log.info("sync worker started (pid %d)", self._proc.pid)
            code = await self._proc.wait()
            if self._stopping:
                return
            log.error("sync worker exited with status %d; restarting in %.0fs", code, backoff)
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
