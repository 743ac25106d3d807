#!/usr/bin/env python3
"""The change feed and replicas, measured; every figure from one run.

    .venv/bin/python scripts/feed_bench.py --mirror /path/mirror.sqlite3 \\
        [--part latency] [--part bot] [--part replica] [--streams 200] [--writes 60]

``latency``: ``patchwork-gateway serve`` on the mirror; 200 idle streams
(server-sent events filtered to what the writer never changes, so each
wakes at every change and goes back to sleep), one stream and one
long-poll reading everything; a writer changes the mirror through
``mirror.store`` once a second as the sync does (scripts/churn_bench.py's
writes).  Reported: from a change's commit to its arrival on the stream
and on the long-poll, p50 and p99; the gateway's memory and a cached
page's rate and p99 (wrk) before the streams open and with them open.

``bot``: one hour of synthetic activity (3,600 writes, in 30 rounds of
120), and two bots polling every 120 s of it: one as CI bots poll the API
today (NIPA, kernel-patches-daemon: events since its last poll, then each
patch, its checks or its comments), one polling the feed with
``expand=1``.  Reported: requests and bytes each, as their upstream sees
them.

``replica``: a gateway on the mirror (tier 1, with a replication token),
and a replica from nothing (tier 2, ``sync.replica``): upstream requests
and seconds until it serves (the snapshot: made, downloaded, checked,
installed), then its lag behind tier 1 under one write a second.

The writer adds what it writes to the mirror: run it on a copy if that
matters.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gzip
import json
import re
import secrets
import sqlite3
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from churn_bench import Churn
from loadgen import Server, free_port, wrk

from mirror import schema, store
from sync.replica import Replica

FEED = "/_gateway/changes"
STREAM = {"Accept": "text/event-stream"}


def gateway(tmp: Path, mirror: Path, token: str = "") -> Server:
    port = free_port()
    config = tmp / f"gateway-{port}.toml"
    config.write_text(
        f'[upstream]\nurl = "http://127.0.0.1:9"\n[storage]\npath = "{mirror}"\n'
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nfeed_waiting_per_client = 1000\n'
        + (f'replication_token = "{token}"\n' if token else "")
        + '[logging]\nlevel = "warning"\n'
    )
    return Server([sys.executable, "-m", "cli.main", "serve", "--config", str(config)], port)


def rss(server: Server) -> int:
    assert server.proc is not None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) * 1024 if match else 0


def _seconds(date: str) -> float:
    """An entry's ``date`` (UTC, as Patchwork writes dates) as epoch seconds."""
    moment = datetime.datetime.fromisoformat(date).replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


def write_for(churn: Churn, writes: int) -> None:
    """Churn's writes, one a second, until ``writes`` are done (in its thread)."""
    churn.start(1.0)
    while churn.writes < writes:
        time.sleep(0.05)
    churn.stop()


# -- latency -------------------------------------------------------------------


async def _stream(
    session: aiohttp.ClientSession,
    url: str,
    params: dict[str, str],
    got: list[float],
    stop: asyncio.Event,
) -> None:
    async with session.get(url + FEED, params=params, headers=STREAM) as resp:
        assert resp.status == 200, resp.status
        while not stop.is_set():
            try:
                line = await asyncio.wait_for(resp.content.readline(), 1.0)
            except TimeoutError:
                continue
            if line.startswith(b"data: "):
                got.append(time.time() - _seconds(json.loads(line[6:])["date"]))


async def _long_poll(
    session: aiohttp.ClientSession, url: str, got: list[float], stop: asyncio.Event
) -> None:
    async with session.get(url + FEED) as resp:
        cursor = (await resp.json())["next"]
    while not stop.is_set():
        async with session.get(url + FEED, params={"since": cursor, "wait": "5"}) as resp:
            body = await resp.json()
        arrived = time.time()
        got += [arrived - _seconds(e["date"]) for e in body["changes"]]
        cursor = body["next"]


async def latency(mirror: Path, streams: int, writes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, gateway(Path(tmp), mirror) as gw:
        page = "/api/patches/?per_page=30&page=3"
        urllib.request.urlopen(gw.url + page).read()
        before = wrk(gw.url, [page], seconds=5, connections=8)
        rss_before = rss(gw)
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            stop = asyncio.Event()
            idle: list[float] = []
            tasks = [
                asyncio.create_task(_stream(session, gw.url, {"resource": "bundles"}, idle, stop))
                for _ in range(streams)
            ]
            streamed: list[float] = []
            polled: list[float] = []
            tasks.append(asyncio.create_task(_stream(session, gw.url, {}, streamed, stop)))
            tasks.append(asyncio.create_task(_long_poll(session, gw.url, polled, stop)))
            await asyncio.sleep(2)
            rss_open = rss(gw)
            writing = asyncio.create_task(asyncio.to_thread(write_for, Churn(mirror, 7), writes))
            during = await asyncio.to_thread(wrk, gw.url, [page], seconds=5, connections=8)
            await writing
            await asyncio.sleep(3)
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            rss_after = rss(gw)
    return {
        "streams": streams,
        "writes": writes,
        "stream_ms": [1000 * pct(streamed, 50), 1000 * pct(streamed, 99)],
        "long_poll_ms": [1000 * pct(polled, 50), 1000 * pct(polled, 99)],
        "entries": [len(streamed), len(polled)],
        "rss_mib": [rss_before / 2**20, rss_open / 2**20, rss_after / 2**20],
        "page_before": [before.rate, before.p99_ms],
        "page_with_streams": [during.rate, during.p99_ms],
    }


# -- a bot's cost ----------------------------------------------------------------


async def bot(mirror: Path, rounds: int, per_round: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, gateway(Path(tmp), mirror) as gw:
        # (Bytes as they travel: gzip asked for, as bots' HTTP clients do.)
        headers = {"Accept-Encoding": "gzip"}
        async with aiohttp.ClientSession(auto_decompress=False, headers=headers) as session:
            cost = {"api": [0, 0], "feed": [0, 0]}

            async def get(kind: str, path: str, **params: str) -> Any:
                async with session.get(gw.url + path, params=params) as resp:
                    body = await resp.read()
                    packed = resp.headers.get("Content-Encoding") == "gzip"
                cost[kind][0] += 1
                cost[kind][1] += len(body)
                return json.loads(gzip.decompress(body) if packed else body)

            # Where each bot starts: the newest event's date, the feed's cursor.
            newest = sqlite3.connect(mirror).execute("SELECT max(date) FROM events").fetchone()[0]
            since = newest
            cursor = (await get("feed", FEED))["next"]
            cost["feed"] = [0, 0]
            churn = Churn(mirror, seed=11)
            db = await schema.connect(mirror)
            try:
                for r in range(rounds):
                    for n in range(per_round):
                        await store.write(db, await churn._batch(db, r * per_round + n))
                    await asyncio.sleep(1.2)  # (the gateway sees the writes)
                    # As NIPA and kernel-patches-daemon poll: events since, then details.
                    page, events = 1, []
                    while True:
                        got = await get(
                            "api", "/api/events/", since=since, per_page="250", page=str(page)
                        )
                        events += got
                        if len(got) < 250:
                            break
                        page += 1
                    for event in events:
                        payload = event.get("payload") or {}
                        patch = (payload.get("patch") or {}).get("id")
                        category = event["category"]
                        if patch is None:
                            continue
                        if category in ("patch-created", "patch-state-changed"):
                            await get("api", f"/api/patches/{patch}/")
                        elif category == "check-created":
                            await get("api", f"/api/patches/{patch}/checks/")
                        elif category == "patch-comment-created":
                            await get("api", f"/api/patches/{patch}/comments/")
                    if events:
                        since = max(e["date"] for e in events)
                    # The feed: what changed, with each object.
                    while True:
                        got = await get("feed", FEED, since=cursor, expand="1", limit="1000")
                        cursor = got["next"]
                        if not got["more"]:
                            break
            finally:
                await db.close()
    return {
        "rounds": rounds,
        "writes": rounds * per_round,
        "api": cost["api"],
        "feed": cost["feed"],
    }


# -- replicas --------------------------------------------------------------------


async def replica(mirror: Path, writes: int) -> dict[str, Any]:
    token = secrets.token_hex(16)
    folder = Path(tempfile.mkdtemp(dir=mirror.parent, prefix="replica-"))
    try:
        with gateway(folder, mirror, token) as tier1:
            tier2 = folder / "tier2.sqlite3"
            follower = Replica(tier2, tier1.url, token, timeout=3600)
            started = time.monotonic()
            await follower.run(once=True)
            bootstrap = time.monotonic() - started
            requests = follower.requests
            # Then the lag under one write a second.
            lags: list[float] = []
            following = asyncio.create_task(Replica(tier2, tier1.url, token).run(once=False))
            source = sqlite3.connect(mirror)
            seen = sqlite3.connect(tier2)
            last_head = source.execute(schema.LAST_SEQ).fetchone()[0]
            writing = asyncio.create_task(asyncio.to_thread(write_for, Churn(mirror, 7), writes))
            pending: list[tuple[int, float]] = []
            deadline = time.monotonic() + writes + 60
            while (not writing.done() or pending) and time.monotonic() < deadline:
                head = source.execute(schema.LAST_SEQ).fetchone()[0]
                if head != last_head:
                    pending.append((head, time.time()))
                    last_head = head
                row = seen.execute("SELECT value FROM meta WHERE key = 'replica.cursor'").fetchone()
                applied = int(row[0].rpartition("-")[2]) if row else 0
                while pending and pending[0][0] <= applied:
                    lags.append(time.time() - pending.pop(0)[1])
                await asyncio.sleep(0.01)
            await writing
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
            size = tier2.stat().st_size
    finally:
        for path in sorted(folder.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        folder.rmdir()
    snapshots = mirror.with_name(mirror.name + ".snapshots")
    return {
        "mirror_bytes": mirror.stat().st_size,
        "replica_bytes": size,
        "bootstrap_s": bootstrap,
        "bootstrap_requests": requests,
        "lag_ms": [1000 * pct(lags, 50), 1000 * pct(lags, 99)],
        "writes": writes,
        "snapshots_left": [p.name for p in snapshots.glob("*")] if snapshots.exists() else [],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mirror", type=Path, required=True)
    parser.add_argument("--part", action="append", choices=("latency", "bot", "replica"))
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--writes", type=int, default=60)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    parts = args.part or ["latency", "bot", "replica"]
    results: dict[str, Any] = {}
    if "latency" in parts:
        r = results["latency"] = asyncio.run(latency(args.mirror, args.streams, args.writes))
        print(f"feed latency, {r['streams']} idle streams open, {r['writes']} writes at 1/s:")
        for name, key, n in (("stream", "stream_ms", 0), ("long-poll", "long_poll_ms", 1)):
            p50, p99 = r[key]
            print(f"  {name:10s} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  ({r['entries'][n]} entries)")
        before, opened, after = r["rss_mib"]
        print(f"  memory: {before:.0f} MiB, {opened:.0f} with the streams, {after:.0f} after")
        for name, key in (("before", "page_before"), ("with streams", "page_with_streams")):
            rate, p99 = r[key]
            print(f"  cached page, {name:12s} {rate:9,.0f} req/s  p99 {p99:.2f} ms")
    if "bot" in parts:
        r = results["bot"] = asyncio.run(bot(args.mirror, 30, 120))
        print(f"a bot's cost over {r['writes']} writes, {r['rounds']} polls:")
        for name, key in (("API (events, then details)", "api"), ("feed, expand=1", "feed")):
            count, size = r[key]
            print(f"  {name:28s} {count:6d} requests {size / 2**20:8.1f} MiB")
    if "replica" in parts:
        r = results["replica"] = asyncio.run(replica(args.mirror, args.writes))
        size, seconds = r["mirror_bytes"] / 2**30, r["bootstrap_s"]
        print(f"replica of a {size:.1f} GiB mirror: serving after {seconds:.0f} s")
        print(f"  requests to tier 1 until then: {r['bootstrap_requests']}")
        p50, p99 = r["lag_ms"]
        print(f"  lag behind tier 1 at 1 write/s: p50 {p50:.0f} ms, p99 {p99:.0f} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
