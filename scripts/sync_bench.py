#!/usr/bin/env python3
"""Measure how fresh the mirror stays, what it costs upstream, and whether
serving sags while the sync works; print every figure from one run.

1. The initial sync of the recorded crawl (``tests/fixtures``) from a
   local replay over HTTP: requests and seconds, against the requests of
   a crawl that fetches every comment and check list.
2. ``patchwork-gateway run`` with the default ``[sync]`` settings against
   an upstream that changes: the stateful fake Patchwork of the tests,
   or a real one (``--upstream URL --token T``; changes are then made
   through its REST API, so the token must be a maintainer's):

   * upstream requests per minute while nothing changes;
   * freshness: the seconds from a change made upstream to the gateway
     serving it, for changes with an event (state) and without (archived);
   * with ``wrk`` (Debian's package), requests per second for a 30-patch
     page, cached and uncached (random deep pages of a filtered list,
     response cache off), by ``serve`` alone and by ``run`` while its sync
     works, beside a bare aiohttp server returning the same bytes.

    .venv/bin/python scripts/sync_bench.py [--upstream URL --token T]
        [--changes 10] [--idle 60] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.mirroring import TOKEN, fake_upstream, serve  # noqa: E402
from tests.support import every, free_port, replay_upstream, tokens, write_config  # noqa: E402

PAGE = "/api/1.4/patches/?per_page=30"


def http(method: str, url: str, token: str = "", body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(url, method=method)
    if token:
        request.add_header("Authorization", f"Token {token}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, data, timeout=60) as resp:
        return json.loads(resp.read() or b"null")


def wait_for(check: Callable[[], bool], timeout: float = 600, step: float = 0.05) -> float:
    started = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - started
        except OSError:
            pass
        if time.monotonic() - started > timeout:
            raise TimeoutError
        time.sleep(step)


@contextlib.contextmanager
def process(args: list[str], port: int | None, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process started with ``args``; with a ``port``, once it answers /api/."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        if port is not None:
            wait_for(lambda: _answers(f"http://127.0.0.1:{port}/api/"), 60)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return resp.status == 200


def gateway(command: str, config: Path, port: int, log: Path) -> Any:
    return process([sys.executable, "-m", "cli.main", command, "--config", str(config)], port, log)


# -- 1. the initial sync of the recorded crawl ---------------------------------


def initial_sync(directory: Path) -> None:
    counter = [0]
    with replay_upstream(counter) as upstream:
        config = write_config(
            directory / "replay.toml",
            upstream.url,
            directory / "replay.sqlite3",
            free_port(),
            token=tokens()["cibot"],
        )
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "cli.main", "sync", "--config", str(config), "--once"],
            check=True,
        )
        seconds = time.monotonic() - started
        requests = counter[0]
        counter[0] = 0
        asyncio.run(_exhaustive_crawl(upstream.url, directory / "exhaustive.sqlite3"))
        exhaustive = counter[0]
    print(
        f"initial sync of the recorded crawl: {requests} requests, {seconds:.2f} s for the "
        f"whole command (a crawl fetching every comment and check list: {exhaustive} "
        f"requests; {requests / exhaustive:.0%} of it)"
    )


async def _exhaustive_crawl(url: str, path: Path) -> None:
    from mirror import schema
    from sync.crawler import Crawler
    from sync.progress import Progress
    from sync.upstream import Upstream

    upstream = Upstream(url, tokens()["cibot"])
    db = await schema.connect(path)
    try:
        await Crawler(db, upstream, url, progress=Progress(False), exhaustive=True).run()
    finally:
        await db.close()
        await upstream.close()


# -- 2. following a changing upstream ------------------------------------------


class Changes:
    """Changes made upstream: through a fake's methods or a real REST API."""

    def __init__(self, upstream: str, token: str, fake: Any = None) -> None:
        self.upstream, self.token, self.fake = upstream, token, fake
        patches = http("GET", f"{upstream}/api/1.4/patches/?order=-id&per_page=100", token)
        self.patches = [p["id"] for p in patches]
        random.Random(6).shuffle(self.patches)

    def state(self, patch: int, slug: str) -> None:
        if self.fake is not None:
            self.fake.set_state(patch, slug)
        else:
            http("PATCH", f"{self.upstream}/api/1.4/patches/{patch}/", self.token, {"state": slug})

    def archived(self, patch: int, value: bool) -> None:
        if self.fake is not None:
            self.fake.set_archived(patch, value)
        else:
            http(
                "PATCH",
                f"{self.upstream}/api/1.4/patches/{patch}/",
                self.token,
                {"archived": value},
            )


def freshness(gw: str, changes: Changes, count: int) -> tuple[list[float], list[float]]:
    with_event, without = [], []
    for i in range(count):
        patch = changes.patches[i % len(changes.patches)]
        current = http("GET", f"{gw}/api/1.4/patches/{patch}/")
        slug = "changes-requested" if current["state"] != "changes-requested" else "new"
        started = time.monotonic()
        changes.state(patch, slug)
        wait_for(lambda p=patch, s=slug: http("GET", f"{gw}/api/1.4/patches/{p}/")["state"] == s)
        with_event.append(time.monotonic() - started)
        print(f"  state of patch {patch}: served after {with_event[-1]:.2f} s", flush=True)
    for i in range(max(1, count // 3)):
        patch = changes.patches[-1 - i]
        flag = not http("GET", f"{gw}/api/1.4/patches/{patch}/")["archived"]
        started = time.monotonic()
        changes.archived(patch, flag)
        wait_for(lambda p=patch, f=flag: http("GET", f"{gw}/api/1.4/patches/{p}/")["archived"] == f)
        without.append(time.monotonic() - started)
        print(f"  archived of patch {patch}: served after {without[-1]:.1f} s", flush=True)
    return with_event, without


def wrk(url: str, seconds: float, script: Path | None = None, token: str = "") -> float:
    args = ["wrk", "-t1", "-c8", f"-d{round(seconds)}s", "--latency"]
    if script is not None:
        args += ["-s", str(script)]
    if token:
        args += ["-H", f"Authorization: Token {token}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(out)


def random_pages(directory: Path, gw: str) -> Path:
    """A wrk script asking for random deep pages of a filtered list."""
    project = http("GET", f"{gw}/api/1.4/projects/")[0]["link_name"]
    first = urllib.request.urlopen(f"{gw}/api/1.4/patches/?project={project}&per_page=30")
    found = re.search(r'[?&]page=(\d+)[^>]*>; rel="last"', first.headers.get("Link", ""))
    last = int(found.group(1)) if found else 1
    paths = [
        f"/api/1.4/patches/?page={n}&per_page=30&project={project}" for n in range(1, last + 1)
    ]
    script = directory / "pages.lua"
    script.write_text(
        "paths = {" + ",".join(f'"{p}"' for p in paths) + "}\n"
        "request = function()\n"
        "  return wrk.format(nil, paths[math.random(#paths)])\n"
        "end\n"
    )
    print(f"  uncached: random pages of {len(paths)} of /api/1.4/patches/?project={project}")
    return script


@contextlib.contextmanager
def bare_aiohttp(body: bytes, directory: Path) -> Iterator[str]:
    """A bare aiohttp server answering every GET with ``body``: the ceiling."""
    port = free_port()
    (directory / "body.json").write_bytes(body)
    code = (
        "from aiohttp import web\n"
        f"body = open({str(directory / 'body.json')!r}, 'rb').read()\n"
        "async def handle(r):\n"
        "    return web.Response(body=body, content_type='application/json')\n"
        "app = web.Application()\n"
        "app.router.add_get('/{tail:.*}', handle)\n"
        f"web.run_app(app, host='127.0.0.1', port={port}, print=None, access_log=None)\n"
    )
    with process([sys.executable, "-c", code], port, directory / "bare.log"):
        yield f"http://127.0.0.1:{port}"


def churning(changes: Changes, seconds: float) -> Any:
    """Upstream changes (state changes, with events) every ``seconds``."""
    rng = random.Random(7)

    def change() -> None:
        with contextlib.suppress(OSError):
            changes.state(rng.choice(changes.patches), rng.choice(("new", "under-review")))

    return every(seconds, change)


def follow(directory: Path, args: argparse.Namespace) -> None:
    fake = None
    if args.upstream:
        upstream, token = args.upstream.rstrip("/"), args.token
        source = None
    else:
        fake = fake_upstream()
        source = serve(fake)
        upstream, token = source.__enter__(), TOKEN
    try:
        port = free_port()
        config = directory / "run.toml"
        config.write_text(
            f'[upstream]\nurl = "{upstream}"\ntoken = "{token}"\n'
            f'[storage]\npath = "{directory / "mirror.sqlite3"}"\n'
            f'[server]\nport = {port}\n[logging]\nlevel = "warning"\n'
        )
        gw = f"http://127.0.0.1:{port}"
        with gateway("run", config, port, directory / "run.log"):
            started = time.monotonic()
            wait_for(
                lambda: http("GET", f"{gw}/_gateway/status")["initial_sync"] == "complete", 3600
            )
            time.sleep(1.5)  # the status is re-read once a second
            status = http("GET", f"{gw}/_gateway/status")
            print(
                f"run, default settings: initial sync in {time.monotonic() - started:.1f} s, "
                f"{status['sync']['upstream_requests_total']} upstream requests; counts "
                f"{status['counts']}"
            )
            time.sleep(15)  # the first sweeps start at once; let them settle
            before = http("GET", f"{gw}/_gateway/status")["sync"]["upstream_requests_total"]
            time.sleep(args.idle)
            after = http("GET", f"{gw}/_gateway/status")["sync"]["upstream_requests_total"]
            print(
                f"idle: {(after - before) * 60 / args.idle:.1f} upstream requests per minute "
                f"(measured over {args.idle:.0f} s)"
            )
            changes = Changes(upstream, token, fake)
            event, no_event = freshness(gw, changes, args.changes)
            print(
                f"freshness, change with an event: median {statistics.median(event):.2f} s, "
                f"max {max(event):.2f} s over {len(event)} changes (poll_interval 10 s)"
            )
            print(
                f"freshness, change without an event (archived): median "
                f"{statistics.median(no_event):.1f} s, max {max(no_event):.1f} s over "
                f"{len(no_event)} changes"
            )
        rates(directory, config, args, Changes(upstream, token, fake))
    finally:
        if source is not None:
            source.__exit__(None, None, None)


def rates(directory: Path, config: Path, args: argparse.Namespace, changes: Changes) -> None:
    """30-patch pages by wrk: bare aiohttp; `serve` on the mirror alone, and
    while a `sync` process (the worker `run` starts) applies a change every
    second and sweeps, on the same file."""
    if shutil.which("wrk") is None:
        print("wrk not found (apt-get install wrk): rates not measured")
        return
    mirror = directory / "mirror.sqlite3"
    results: dict[str, float] = {}
    servers = []
    for cache, label in ((268435456, "cached"), (0, "uncached")):
        port = free_port()
        path = directory / f"serve-{label}.toml"
        path.write_text(
            f'[storage]\npath = "{mirror}"\n[server]\nport = {port}\ncache_bytes = {cache}\n'
            f'[logging]\nlevel = "warning"\n[upstream]\nurl = "{changes.upstream}"\n'
        )
        servers.append((label, path, port))
    busy = directory / "busy.toml"
    busy.write_text(config.read_text().replace("[logging]", "[sync]\npoll_interval = 1\n[logging]"))
    with gateway("serve", servers[0][1], servers[0][2], directory / "page.log"):
        gw = f"http://127.0.0.1:{servers[0][2]}"
        body = urllib.request.urlopen(gw + PAGE).read()
        script = random_pages(directory, gw)
    with bare_aiohttp(body, directory) as bare:
        results["bare aiohttp, same bytes"] = wrk(bare + PAGE, args.seconds)
    for syncing in (False, True):
        for label, path, port in servers:
            with contextlib.ExitStack() as stack:
                stack.enter_context(gateway("serve", path, port, directory / f"{label}.log"))
                if syncing:
                    stack.enter_context(
                        process(
                            [sys.executable, "-m", "cli.main", "sync", "--config", str(busy)],
                            None,
                            directory / "busy-sync.log",
                        )
                    )
                    stack.enter_context(churning(changes, 0.25))
                    time.sleep(2)
                url = f"http://127.0.0.1:{port}"
                name = f"{'while syncing' if syncing else 'serve alone'}, {label}"
                pages = script if label == "uncached" else None
                results[name] = wrk(url + PAGE, args.seconds, pages)
                if not syncing:  # the same reads with a valid token
                    results[f"{name}, with a token"] = wrk(
                        url + PAGE, args.seconds, pages, changes.token
                    )
    for name, value in results.items():
        print(f"  {name:32s} {value:9.0f} requests/s")
    bare = results["bare aiohttp, same bytes"]
    print(
        f"ratios: cached / bare aiohttp {results['serve alone, cached'] / bare:.0%}; "
        f"while syncing / alone: cached "
        f"{results['while syncing, cached'] / results['serve alone, cached']:.0%}, uncached "
        f"{results['while syncing, uncached'] / results['serve alone, uncached']:.0%}; "
        f"with a token / anonymous: cached "
        f"{results['serve alone, cached, with a token'] / results['serve alone, cached']:.0%}, "
        "uncached "
        f"{results['serve alone, uncached, with a token'] / results['serve alone, uncached']:.0%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", help="a real Patchwork to follow (default: the fake)")
    parser.add_argument("--token", default="", help="a maintainer's API token upstream")
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds measuring idle")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--skip-initial", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmp:
        directory = Path(tmp)
        if not args.skip_initial:
            initial_sync(directory)
        follow(directory, args)


if __name__ == "__main__":
    main()
