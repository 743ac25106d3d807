"""The sync's HTTP client: retries, backoff, Retry-After, bounds, secrecy."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from sync.upstream import Upstream, UpstreamError


def _flaky(script: list[tuple[int, dict[str, str], float]]):
    """A handler answering each request with the next (status, headers, delay)."""
    seen: list[web.Request] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request)
        status, headers, delay = script[min(len(seen), len(script)) - 1]
        if delay:
            await asyncio.sleep(delay)
        return web.json_response({"n": len(seen)}, status=status, headers=headers)

    return handle, seen


@contextlib.asynccontextmanager
async def _upstream(aiohttp_server, handler, **options) -> AsyncIterator[Upstream]:
    """An Upstream client of a loopback server answering with ``handler``."""
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    server = await aiohttp_server(app)
    up = Upstream(str(server.make_url("")), **options)
    try:
        yield up
    finally:
        await up.close()


async def test_retries_5xx_then_succeeds(aiohttp_server):
    handler, _seen = _flaky([(503, {}, 0), (502, {}, 0), (200, {}, 0)])
    async with _upstream(aiohttp_server, handler, max_backoff=0.05) as up:
        resp = await up.get("/api/1.4/")
    assert resp.status == 200
    assert resp.json() == {"n": 3}


async def test_honours_retry_after_on_429(aiohttp_server):
    handler, _seen = _flaky([(429, {"Retry-After": "1"}, 0), (200, {}, 0)])
    async with _upstream(aiohttp_server, handler, max_backoff=0.01) as up:
        started = time.monotonic()
        resp = await up.get("/api/1.4/patches/")
    assert resp.status == 200
    assert time.monotonic() - started >= 1.0


async def test_retries_time_outs(aiohttp_server):
    handler, _seen = _flaky([(200, {}, 2.0), (200, {}, 0)])
    async with _upstream(aiohttp_server, handler, timeout=0.5, max_backoff=0.05) as up:
        resp = await up.get("/api/1.4/")
    assert resp.json() == {"n": 2}


async def test_gives_up_after_the_last_attempt(aiohttp_server):
    handler, seen = _flaky([(500, {}, 0)])
    async with _upstream(aiohttp_server, handler, attempts=3, max_backoff=0.01) as up:
        with pytest.raises(UpstreamError, match="HTTP 500"):
            await up.get("/api/1.4/")
    assert len(seen) == 3


async def test_client_errors_are_answers_not_retries(aiohttp_server):
    handler, seen = _flaky([(404, {}, 0)])
    async with _upstream(aiohttp_server, handler, max_backoff=0.01) as up:
        resp = await up.get("/api/1.4/nothing/")
    assert resp.status == 404
    assert len(seen) == 1


async def test_oversized_answers_are_refused(aiohttp_server):
    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 10_000)

    async with _upstream(aiohttp_server, big, max_bytes=1000) as up:
        with pytest.raises(UpstreamError, match=r"too large|larger"):
            await up.get("/api/1.4/")


async def test_concurrency_is_bounded(aiohttp_server):
    in_flight = [0, 0]

    async def slow(request: web.Request) -> web.Response:
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        await asyncio.sleep(0.05)
        in_flight[0] -= 1
        return web.json_response({})

    async with _upstream(aiohttp_server, slow, concurrency=3) as up:
        await asyncio.gather(*(up.get(f"/api/1.4/patches/{i}/") for i in range(12)))
    assert in_flight[1] == 3


async def test_token_is_sent_but_never_logged(aiohttp_server, caplog):
    handler, seen = _flaky([(503, {}, 0), (200, {}, 0)])
    token = "5ecret7oken5ecret7oken"
    caplog.set_level(logging.DEBUG)
    async with _upstream(aiohttp_server, handler, token=token, max_backoff=0.01) as up:
        await up.get("/api/1.4/")
    assert seen[-1].headers["Authorization"] == f"Token {token}"
    assert token not in caplog.text
