"""Progress reporting: a bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm

log = logging.getLogger("sync.progress")


class Phase:
    def __init__(self, name: str, total: int, bar: bool) -> None:
        self.name = name
        self.total = total
        self.done = 0
        self._bar = tqdm(total=total, desc=name, unit="req", leave=True) if bar else None
        self._last_log = time.monotonic()
        if not bar:
            log.info("%s: %d to fetch", name, total)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif time.monotonic() - self._last_log > 10:
            self._last_log = time.monotonic()
            log.info("%s: %d/%d", self.name, self.done, self.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            log.info("%s: done (%d)", self.name, self.done)


class Progress:
    """Creates one :class:`Phase` per crawl phase."""

    def __init__(self, bar: bool | None = None) -> None:
        self.bar = sys.stderr.isatty() if bar is None else bar
        self._noted: set[str] = set()

    def note(self, message: str) -> None:
        """Log ``message`` once (a crawl retried while upstream is down
        would say it at every attempt); at debug level after."""
        log.log(logging.DEBUG if message in self._noted else logging.INFO, "%s", message)
        self._noted.add(message)

    def phase(self, name: str, total: int) -> Phase:
        return Phase(name, total, self.bar)
