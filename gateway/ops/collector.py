"""Python's garbage collector in a server whose caches hold millions of objects.

CPython's collector looks for reference cycles.  Its full collections walk
every container object the process holds: at a million patches the mirror's
caches (parsed documents, list items, ordered ids, answers) are a few
million of them, and a full collection stops the event loop for 100-250 ms,
every request in flight with it.  Under churn the caches renew themselves,
so full collections come every few seconds.  Nothing in the caches is
cyclic garbage: they are freed by reference counting when evicted.

So the server *freezes* what has lived a while (``gc.freeze``: moved out of
the collector's sight, at no cost): every :data:`FREEZE_EVERY` seconds
whatever survived since is frozen, and collections walk only what is
younger.  Cyclic garbage among frozen objects (rare: an exception kept with
its frames, say) would stay until the next thaw: every :data:`THAW_EVERY`
seconds everything is thawed and collected once, then frozen again, so
that it is bounded by an hour's worth.

Every collection's pause is timed for ``/metrics``
(``patchwork_gateway_gc_pause_seconds``, by generation).
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import time
from collections.abc import AsyncIterator
from typing import Any

#: Seconds between freezes of what survived.
FREEZE_EVERY = 60.0
#: Seconds between full collections of everything (thawed, then frozen).
THAW_EVERY = 3600.0
#: Pause buckets (seconds).
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Pauses:
    """Collections by generation: a row of bucket counts (the last: +Inf)
    and their sum, taken by the metrics publisher (gateway.ops.metrics)."""

    def __init__(self) -> None:
        self.rows: dict[int, list[float]] = {}
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        """A ``gc.callbacks`` entry: times each collection."""
        if phase == "start":
            self._started = time.perf_counter()
            return
        seconds = time.perf_counter() - self._started
        row = self.rows.get(info["generation"])
        if row is None:
            row = self.rows[info["generation"]] = [0.0] * (len(BUCKETS) + 2)
        row[bisect.bisect_left(BUCKETS, seconds)] += 1
        row[-1] += seconds

    def take(self) -> dict[int, list[float]]:
        """What was timed since the last call."""
        taken, self.rows = self.rows, {}
        return taken


async def collecting(pauses: Pauses) -> AsyncIterator[None]:
    """For the server's life: collections timed, what survived frozen."""
    gc.callbacks.append(pauses)
    task = asyncio.create_task(_freeze_what_lives())
    try:
        yield
    finally:
        task.cancel()
        gc.callbacks.remove(pauses)
        gc.unfreeze()


async def _freeze_what_lives() -> None:
    thawed_at = time.monotonic()
    gc.freeze()  # (what start-up made: modules, settings, the first caches)
    while True:
        await asyncio.sleep(FREEZE_EVERY)
        if time.monotonic() - thawed_at >= THAW_EVERY:
            gc.unfreeze()
            gc.collect()
            thawed_at = time.monotonic()
        gc.freeze()
