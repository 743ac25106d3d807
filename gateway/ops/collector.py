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
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

#: Seconds between freezes of what survived.
FREEZE_EVERY = 10.0
#: Seconds between full collections of everything (thawed, then frozen).
THAW_EVERY = 3600.0


@contextlib.asynccontextmanager
async def collecting(pause: Callable[[int, float], None]) -> AsyncIterator[None]:
    """For the server's life: each collection's generation and seconds to
    ``pause`` (gateway.ops.metrics), what survived frozen."""
    started = 0.0

    def timed(phase: str, info: dict[str, Any]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            pause(info["generation"], time.perf_counter() - started)

    gc.callbacks.append(timed)
    task = asyncio.create_task(_freeze_what_lives())
    try:
        yield
    finally:
        task.cancel()
        gc.callbacks.remove(timed)
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
