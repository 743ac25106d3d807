"""Faults on either side of the sync: upstream misbehaving, the mirror's
disk refusing writes.  The mirror never holds half of anything, the
sync recovers by itself, and its status says what went wrong meanwhile."""

from __future__ import annotations

import asyncio
import collections
import json
import random

import aiohttp
import pytest
from aiohttp import web

from mirror.reader import Reader
from tests.mirroring import (
    assert_mirror_equals,
    fake_upstream,
    serve,
    until_mirror_equals,
    worker,
)
from tests.support import ThreadedServer


async def _until(check, seconds: float = 20.0) -> None:
    for _ in range(int(seconds * 20)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {seconds}s")


@pytest.mark.parametrize(
    ("refuse", "allow", "says"),
    [
        ("PRAGMA max_page_count = {pages}", "PRAGMA max_page_count = 1073741823", "full"),
        ("PRAGMA query_only = ON", "PRAGMA query_only = OFF", "readonly"),
    ],
    ids=["disk full", "read-only"],
)
async def test_a_mirror_refusing_writes_keeps_serving_and_the_sync_resumes(
    tmp_path, refuse, allow, says
):
    fake = fake_upstream()
    mirror = tmp_path / "m.sqlite3"
    with serve(fake) as url:
        async with worker(mirror, url, poll_interval=0.1) as sync:
            await sync.once()
            pages = (await sync.db.execute_fetchall("PRAGMA page_count"))[0][0]
            await sync.db.execute(refuse.format(pages=pages))
            made = fake.new_series(1, n_patches=30, cover=True)
            task = asyncio.create_task(sync.run())
            try:

                async def failing() -> bool:
                    error = sync.control.status().get("last_error") or {}
                    return says in error.get("message", "").replace(" ", "")

                await _until(failing)
                # Reads go on meanwhile, and show none of the new series.
                reader = Reader(mirror)
                await reader.open(60)
                try:
                    assert not reader.exists("series", made["series"])
                    assert reader.exists("patches", 1)
                finally:
                    await reader.close()

                await sync.db.execute(allow)

                async def recovered() -> bool:
                    return sync.control.status().get("last_error") is None

                await _until(recovered)
                await assert_mirror_equals(mirror, fake)
            finally:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task


class Chaos:
    """A proxy in front of an upstream that answers some requests badly:
    a stall past the time-out, a reset mid-body, 500/502/503, 429 with
    Retry-After, a truncated body, invalid JSON, or unknown extra fields."""

    FAULTS = ("stall", "reset", "500", "502", "503", "429", "truncated", "garbage", "extra")

    def __init__(self, upstream: str, rate: float, seed: int = 7) -> None:
        self.upstream = upstream
        self.rate = rate
        self.rng = random.Random(seed)
        self.injected: collections.Counter[str] = collections.Counter()

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            fault = self.rng.choice(self.FAULTS) if self.rng.random() < self.rate else None
            if fault:
                self.injected[fault] += 1
            if fault == "stall":
                await asyncio.sleep(3)
            if fault in ("500", "502", "503"):
                return web.Response(status=int(fault), text="upstream trouble")
            if fault == "429":
                return web.Response(status=429, headers={"Retry-After": "0"})
            if fault == "garbage":
                return web.Response(status=200, text="{not json", content_type="application/json")
            async with aiohttp.ClientSession() as session:
                url = self.upstream + request.rel_url.raw_path_qs
                async with session.get(url, headers=dict(request.headers)) as got:
                    body, status = await got.read(), got.status
                    headers = {
                        k: got.headers[k] for k in ("Content-Type", "Link") if k in got.headers
                    }
            if fault == "extra" and status == 200:
                data = json.loads(body)
                for item in data if isinstance(data, list) else [data]:
                    if isinstance(item, dict):
                        item["unknown_field_of_a_newer_patchwork"] = {"x": [1, 2]}
                body = json.dumps(data).encode()
            if fault in ("reset", "truncated"):
                response = web.StreamResponse(status=status, headers=headers)
                response.content_length = len(body)
                await response.prepare(request)
                await response.write(body[: len(body) // 2])
                assert request.transport is not None
                request.transport.close()  # the connection drops mid-body
                return response
            return web.Response(status=status, body=body, headers=headers)

        application = web.Application()
        application.router.add_route("GET", "/{tail:.*}", handle)
        return application


async def test_the_sync_rides_out_upstream_faults_and_converges(tmp_path):
    fake = fake_upstream()
    mirror = tmp_path / "m.sqlite3"
    errors_seen = 0
    with serve(fake) as url:
        chaos = Chaos(url, rate=0.04)
        with ThreadedServer(chaos.app()) as proxy:
            async with worker(
                mirror, proxy.url, timeout=1.0, poll_interval=0.2, interval=1, hot_interval=0.5
            ) as sync:
                task = asyncio.create_task(sync.run())
                try:
                    for _ in range(100):  # through the crawl, watching the status
                        await asyncio.sleep(0.1)
                        if sync.control.status().get("last_error"):
                            errors_seen += 1
                    # Upstream changes meanwhile, with and without events.
                    fake.new_series(2, n_patches=5, cover=True)
                    fake.set_state(100, "accepted")
                    fake.set_archived(101, True)
                    fake.rename("patches", 102, "Renamed under chaos")
                    fake.add_check(103, 4, "fail", "ci")
                    fake.delete("patches", 104)
                    await until_mirror_equals(mirror, fake, 110)
                finally:
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
    assert sum(chaos.injected.values()) > 20, chaos.injected
    assert set(chaos.injected) == set(Chaos.FAULTS), chaos.injected
    assert errors_seen > 0  # the status said so meanwhile
