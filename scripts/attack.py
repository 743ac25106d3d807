#!/usr/bin/env python3
"""Memory-growth and stall attacks on a gateway, with the figures.

Starts ``patchwork-gateway serve`` on a copy of a mirror (default: the
demo mirror) with a 64 MiB response cache, then, as an anonymous attacker:

1. floods the cache with distinct URLs whose queries are as long as the
   gateway accepts, each answering ``[]``;
2. asks for 250-item pages with the longest Host header it accepts;
3. sends distinct searches at the bound from 4 clients while timing a
   trivial detail read;
4. sends requests with made-up credentials, which go upstream, at high
   concurrency.

It prints the server's memory (RSS) before and after each, and the read's
latency percentiles during the searches.

    .venv/bin/python scripts/attack.py [--mirror FILE] [--upstream URL] [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import string
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.http import limits
from tests.soak import rss_mb
from tests.support import GatewayProcess, copy_mirror, free_port


async def flood(url: str, paths: list[str], concurrency: int, headers: dict[str, str]) -> dict:
    statuses: dict[int, int] = {}
    queue = iter(paths)
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60), max_field_size=65536
    ) as session:

        async def worker() -> None:
            for path in queue:
                try:
                    async with session.get(url + path, headers=headers) as resp:
                        await resp.read()
                        statuses[resp.status] = statuses.get(resp.status, 0) + 1
                except aiohttp.ClientError:
                    statuses[0] = statuses.get(0, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return dict(sorted(statuses.items()))


async def searches_beside_a_read(url: str, seconds: float) -> list[float]:
    words = [
        "".join(random.choices(string.ascii_lowercase, k=31))
        for _ in range(limits.MAX_SEARCH_TERMS)
    ]
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    async with aiohttp.ClientSession() as session:

        async def searcher(n: int) -> None:
            i = 0
            while time.monotonic() < stop:
                random.shuffle(words)
                q = "+".join(words)
                async with session.get(f"{url}/api/1.4/patches/?q={q}&n={n}-{i}") as resp:
                    await resp.read()
                i += 1

        async def reader() -> None:
            while time.monotonic() < stop:
                started = time.monotonic()
                async with session.get(f"{url}/api/1.4/projects/1/") as resp:
                    await resp.read()
                latencies.append(time.monotonic() - started)
                await asyncio.sleep(0.01)

        await asyncio.gather(reader(), *(searcher(n) for n in range(4)))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", help="a mirror file (copied); default: the demo mirror")
    parser.add_argument("--upstream", default="http://127.0.0.1:9", help="where writes go")
    parser.add_argument("--requests", type=int, default=20000)
    parser.epilog = "Budgets: cache_bytes 64 MiB, mirror_cache_bytes 32 MiB."
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="attack-") as tmp:
        directory = Path(tmp)
        mirror = directory / "mirror.sqlite3"
        if args.mirror:
            copy_mirror(Path(args.mirror), mirror)
        port = free_port()
        # The longest Host name accepted, as if an admin had allowed it (by
        # default only the listen address and localhost are answered).
        long_name = "h" * (limits.MAX_HOST - 6)
        config = directory / "config.toml"
        config.write_text(
            f'[upstream]\nurl = "{args.upstream}"\n[storage]\npath = "{mirror}"\n'
            f"[server]\nport = {port}\ncache_bytes = {64 << 20}\n"
            f"mirror_cache_bytes = {32 << 20}\n"
            f'allowed_hosts = ["127.0.0.1", "{long_name}"]\n[logging]\nlevel = "warning"\n'
        )
        if not args.mirror:  # the demo mirror, built by a serve without upstream
            config.write_text(config.read_text().replace(f'url = "{args.upstream}"', 'url = ""'))
        with GatewayProcess(config, port) as gateway:
            assert gateway.proc is not None
            pid, url = gateway.proc.pid, gateway.url
            print(f"server RSS at start: {rss_mb(pid):.0f} MB")
            filler = "z" * (limits.MAX_QUERY - 40)
            paths = [
                f"/api/1.4/patches/?project=999999&n={i}&f={filler}" for i in range(args.requests)
            ]
            got = asyncio.run(flood(url, paths, 32, {}))
            print(
                f"1. cache flood, {args.requests} distinct 2 KB queries: {got}; "
                f"RSS {rss_mb(pid):.0f} MB"
            )
            host = f"{long_name}:{port}"
            pages = [f"/api/1.4/patches/?per_page=250&page={1 + i % 12}&n={i}" for i in range(3000)]
            got = asyncio.run(flood(url, pages, 16, {"Host": host}))
            print(
                f"2. 3,000 250-item pages with a {len(host)}-character Host: {got}; "
                f"RSS {rss_mb(pid):.0f} MB"
            )
            lat = sorted(asyncio.run(searches_beside_a_read(url, 20)))
            p99 = statistics.quantiles(lat, n=100)[98] if len(lat) > 1 else lat[0]
            print(
                f"3. 4 clients searching at the bound for 20 s: a detail read took "
                f"median {lat[len(lat) // 2] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms "
                f"({len(lat)} reads); RSS {rss_mb(pid):.0f} MB"
            )
            fake = {"Authorization": "Token " + "f" * 40}
            got = asyncio.run(
                flood(url, [f"/api/1.4/patches/?n={i}" for i in range(2000)], 200, fake)
            )
            print(
                f"4. 2,000 requests with made-up tokens, 200 at once (16 go upstream at a "
                f"time, 64 wait, the rest get 503): {got}; RSS {rss_mb(pid):.0f} MB"
            )
            print("log lines with a traceback:", gateway.stderr().count("Traceback"))


if __name__ == "__main__":
    main()
