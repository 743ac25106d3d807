"""A whole check: open the mirror and upstream, then walk each resource in
order, events first."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable

import aiosqlite
import orjson

from cli.check import events, lists
from cli.check.engine import CheckError, Engine
from cli.check.report import CHILDREN, Report, Tally
from cli.config import Config
from mirror.reader import Reader
from mirror.store import REFUSED
from sync import reading
from sync.reading import MAY_BE_REFUSED, SUBLISTS, Progress, Refused

#: Top-level lists, referenced objects first.
TOP = ("projects", "users", "people", "series", "covers", "patches", "bundles")
#: Every resource checked, in order: events first (they tell which objects
#: have changes pending, and which parents have comments or checks).
ORDER = ("events", *TOP, *(sub.child for sub in SUBLISTS))


async def check(
    config: Config,
    *,
    sample: int | None = None,
    resources: Iterable[str] | None = None,
    progress: Progress | None = None,
    rng: random.Random | None = None,
) -> Report:
    """Compare the configured mirror with its upstream."""
    path = config.storage.path
    if not path.exists():
        raise CheckError(f"{path}: no mirror yet (run `sync`)")
    reader = Reader(path, connections=1, cache_bytes=64 << 20)
    await reader.open(3600)
    db = await aiosqlite.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        async with reading.connect(
            config.upstream.url,
            config.upstream.token,
            concurrency=config.upstream.concurrency,
            timeout=config.upstream.timeout,
            attempts=4,
            max_backoff=30.0,
        ) as upstream:
            known = reader.meta("upstream.url")
            if known and known.rstrip("/") != config.upstream.url.rstrip("/"):
                raise CheckError(f"the mirror {path} holds {known}, not {config.upstream.url}")
            engine = Engine(
                reader,
                db,
                upstream,
                config.upstream.url,
                concurrency=config.upstream.concurrency,
                sample=sample,
                progress=progress,
                rng=rng,
            )
            wanted = set(resources or ORDER)
            return await run(engine, [name for name in ORDER if name in wanted])
    finally:
        await db.close()
        await reader.close()


async def run(engine: Engine, names: list[str]) -> Report:
    """Check ``names`` (in :data:`ORDER`); the report."""
    started = time.monotonic()
    await engine.probe()
    refused = set(orjson.loads(engine.reader.meta(REFUSED) or "[]"))
    for name in names:
        tally = engine.report.resources[name] = Tally()
        if name in refused:
            tally.skipped = "not visible to the sync identity (the gateway forwards its reads)"
            continue
        try:
            await _walk(engine, name, tally)
        except Refused:
            if name not in MAY_BE_REFUSED:
                raise
            tally.skipped = "upstream refuses it to the sync identity"
    engine.report.requests = engine.upstream.requests
    engine.report.seconds = time.monotonic() - started
    return engine.report


async def _walk(engine: Engine, name: str, tally: Tally) -> None:
    """The walk that compares one resource: whole, or a sample."""
    if name == "events":
        if engine.sample is None:
            await events.check_whole(engine, tally)
        else:
            await events.check_sample(engine, tally)
    elif name in CHILDREN:
        await lists.check_children(engine, CHILDREN[name], tally)
    elif engine.sample is None:
        await lists.check_whole(engine, name, tally)
    else:
        await lists.check_sample(engine, name, tally, engine.sample)
