#!/usr/bin/env python3
"""Measure the gateway's speed and print the ratios, all from one run.

What is compared, on this machine, with the same load generator:

* bare aiohttp: a handler returning a fixed body as large as the page the
  gateway serves, the ceiling any aiohttp server can reach;
* the gateway answering from its response cache (the same URL again);
* the gateway answering uncached reads (every URL distinct, so each one
  is filtered, paginated and rendered from SQLite);
* optionally a real upstream (``--upstream URL``), read sequentially,
  against the gateway's uncached reads of the same path;
* and how long ``sync --once`` takes to mirror the recorded crawl from a
  local replay of it.

The mirror is the demo mirror built from the recorded fixtures.  Servers
run in their own processes on 127.0.0.1; the load generator is a minimal
keep-alive HTTP/1.1 client in this process.

    .venv/bin/python scripts/benchmark.py [--seconds 5] [--connections 8]
        [--upstream https://patchwork.example.com]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PAGE = "/api/1.4/patches/?per_page=30"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _fetch(reader, writer, host: str, target: str) -> tuple[int, int]:
    """One keep-alive GET: (status, body length)."""
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return int(head[9:12]), length


async def load(url: str, targets: list[str], seconds: float, connections: int) -> float:
    """Requests per second over ``connections`` keep-alive connections."""
    parts = urlsplit(url)
    host = parts.netloc
    count = 0
    stop = time.monotonic() + seconds

    async def worker(offset: int) -> None:
        nonlocal count
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        i = offset
        while time.monotonic() < stop:
            status, _ = await _fetch(reader, writer, host, targets[i % len(targets)])
            if status != 200:
                raise RuntimeError(f"{targets[i % len(targets)]}: HTTP {status}")
            count += 1
            i += connections
        writer.close()

    started = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(connections)))
    return count / (time.monotonic() - started)


async def _connect(parts):
    if parts.scheme == "https":
        import ssl

        return await asyncio.open_connection(
            parts.hostname, parts.port or 443, ssl=ssl.create_default_context()
        )
    return await asyncio.open_connection(parts.hostname, parts.port or 80)


async def latency(url: str, targets: list[str], rounds: int) -> tuple[float, int]:
    """Median seconds per sequential request on one keep-alive connection.

    (Reconnecting, untimed, if the server closes it.)  Also returns the
    size of the last answer.
    """
    parts = urlsplit(url)
    samples = []
    size = 0
    reader, writer = await _connect(parts)
    for i in range(rounds):
        target = parts.path.rstrip("/") + targets[i % len(targets)]
        started = time.perf_counter()
        try:
            status, size = await _fetch(reader, writer, parts.netloc, target)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            reader, writer = await _connect(parts)
            started = time.perf_counter()
            status, size = await _fetch(reader, writer, parts.netloc, target)
        samples.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"{url}{target}: HTTP {status}")
    writer.close()
    return statistics.median(samples), size


BARE = textwrap.dedent(
    """
    import sys
    from aiohttp import web
    body = b"x" * int(sys.argv[2])
    async def handle(request):
        return web.Response(body=body, content_type="application/json")
    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)


REPLAY = textwrap.dedent(
    """
    import sys
    from aiohttp import web
    from sync.recorded import Recording
    port = int(sys.argv[1])
    recording = Recording.from_file(sys.argv[2], f"http://127.0.0.1:{port}")
    async def handle(request):
        found = recording.lookup(request.rel_url.raw_path_qs)
        if found is None:
            return web.Response(status=404, text="not recorded")
        return web.Response(status=found.status, body=found.body, headers=found.headers)
    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
    """
)


def time_sync(directory: Path) -> tuple[float, str]:
    """Seconds to sync the recorded crawl from a replay of it over HTTP."""
    port = free_port()
    crawl = ROOT / "tests" / "fixtures" / "crawl.jsonl.xz"
    replay = start([sys.executable, "-c", REPLAY, str(port), str(crawl)], port)
    try:
        config = directory / "sync.toml"
        config.write_text(
            f'[upstream]\nurl = "http://127.0.0.1:{port}"\n'
            f'[storage]\npath = "{directory / "synced.sqlite3"}"\n[logging]\nlevel = "info"\n'
        )
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "sync", "--config", str(config), "--once"],
            capture_output=True,
            text=True,
            check=True,
        )
        seconds = time.monotonic() - started
    finally:
        stop(replay)
    summary = [line for line in done.stderr.splitlines() if "sync complete" in line]
    return seconds, summary[-1].split("sync complete: ")[-1] if summary else ""


def start(args: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{args} did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def gateway_config(directory: Path, port: int, cache_bytes: int) -> Path:
    config = directory / f"gateway-{port}.toml"
    config.write_text(
        f'[storage]\npath = "{directory / "mirror.sqlite3"}"\n'
        f'[server]\nhost = "127.0.0.1"\nport = {port}\ncache_bytes = {cache_bytes}\n'
        '[logging]\nlevel = "warning"\n'
    )
    return config


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--upstream", help="a Patchwork instance to compare with")
    parser.add_argument("--rounds", type=int, default=30, help="sequential upstream reads")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pw-bench-"))
    serve = [sys.executable, "-m", "gateway.cli", "serve", "--config"]
    procs = []
    try:
        gw_port = free_port()
        procs.append(start([*serve, str(gateway_config(tmp, gw_port, 256 << 20))], gw_port))
        gw = f"http://127.0.0.1:{gw_port}"
        _, body_size = await latency(gw, [PAGE], 1)

        bare_port = free_port()
        procs.append(start([sys.executable, "-c", BARE, str(bare_port), str(body_size)], bare_port))
        bare = f"http://127.0.0.1:{bare_port}"

        # Every uncached target is a distinct URL: another page, another order.
        uncached = [
            f"/api/1.4/patches/?per_page=30&page={page}&order={order}"
            for order in ("id", "-id", "date", "-date", "name")
            for page in range(1, 26)
        ]
        n, s = args.connections, args.seconds
        bare_rps = await load(bare, [PAGE], s, n)
        bare_p50, _ = await latency(bare, [PAGE], 200)
        cached_rps = await load(gw, [PAGE], s, n)
        cached_p50, _ = await latency(gw, [PAGE], 200)
        nocache_port = free_port()
        procs.append(start([*serve, str(gateway_config(tmp, nocache_port, 0))], nocache_port))
        nocache = f"http://127.0.0.1:{nocache_port}"
        # First pass: nothing rendered yet.  Second pass: the same URLs,
        # answers not cached but objects already rendered once.
        cold_p50, _ = await latency(nocache, uncached, len(uncached))
        warm_p50, _ = await latency(nocache, uncached, len(uncached))
        uncached_rps = await load(nocache, uncached, s, n)

        ms = 1e3
        print(f"page: GET {PAGE} ({body_size} bytes)")
        print(f"throughput over {n} keep-alive connections, {s:.0f}s each:")
        print(f"  bare aiohttp, same body      {bare_rps:8.0f} req/s")
        print(
            f"  gateway, cached              {cached_rps:8.0f} req/s"
            f"  = {cached_rps / bare_rps:.0%} of bare aiohttp"
        )
        print(f"  gateway, uncached            {uncached_rps:8.0f} req/s")
        print("median latency of sequential requests on a keep-alive connection:")
        print(f"  bare aiohttp                 {bare_p50 * ms:8.2f} ms")
        print(f"  gateway, cached              {cached_p50 * ms:8.2f} ms")
        print(f"  gateway, uncached, cold      {cold_p50 * ms:8.2f} ms  (nothing rendered before)")
        print(f"  gateway, uncached, warm      {warm_p50 * ms:8.2f} ms  (objects rendered before)")
        if args.upstream:
            up_p50, _ = await latency(args.upstream, [PAGE], args.rounds)
            print(f"  upstream {args.upstream:18s}  {up_p50 * ms:8.2f} ms")
            print("ratios:")
            print(f"  upstream / gateway cached         {up_p50 / cached_p50:6.0f}x")
            print(f"  upstream / gateway uncached, cold {up_p50 / cold_p50:6.0f}x")
            print(f"  upstream / gateway uncached, warm {up_p50 / warm_p50:6.0f}x")
        else:
            print("  upstream: not measured (pass --upstream URL of a Patchwork instance)")
        seconds, summary = time_sync(tmp)
        print("sync of the recorded crawl from a local replay, over HTTP:")
        print(f"  {seconds:.1f} s for the command ({summary})")
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
