#!/usr/bin/env python3
"""Compare two checkouts' speed on one mirror: alternating wrk runs, medians.

On a shared 2-core VM one run of a case varies by 10 to 20 %: two servers
measured one after the other can differ by more than any change made
between them.  This starts both checkouts' gateways side by side on the
same mirror (each with and without its response cache), then measures
them in turn, case by case, round after round, and prints the median of
each with the ratio: a cached page, a 304 to ``If-None-Match``, and an
uncached page of the largest project.

    .venv/bin/python scripts/compare.py BEFORE_DIR [AFTER_DIR] [--rounds 7]
        [--seconds 5] [--mirror FILE]

A checkout whose ``cli`` package is missing is started the older way
(``python -m gateway.cli``).  The mirror defaults to the benchmark's
synthetic one (scripts/benchmark.py makes it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import ROOT, Server, free_port, require_wrk, wrk

PAGE = "/api/1.4/patches/?project=1&per_page=30&page=5"
CASES = ("cached", "304", "uncached")


def start(tree: Path, mirror: Path, cache_bytes: int, folder: Path) -> Server:
    port = free_port()
    config = folder / f"{port}.toml"
    config.write_text(
        f'[upstream]\nurl = "http://127.0.0.1:9"\n[storage]\npath = "{mirror}"\n'
        f'[server]\nhost = "127.0.0.1"\nport = {port}\ncache_bytes = {cache_bytes}\n'
        '[logging]\nlevel = "warning"\n'
    )
    module = "cli.main" if (tree / "cli").is_dir() else "gateway.cli"
    return Server([sys.executable, "-m", module, "serve", "--config", str(config)], port, tree)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path, nargs="?", default=ROOT)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument(
        "--mirror",
        type=Path,
        default=Path("~/.cache/patchwork-gateway-bench/mirror-10000.sqlite3").expanduser(),
    )
    args = parser.parse_args()
    require_wrk()
    folder = Path("/tmp") / f"patchwork-gateway-compare-{time.time_ns()}"
    folder.mkdir()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    servers = {
        (name, kind): start(tree, args.mirror, cache, folder)
        for name, tree in trees.items()
        for kind, cache in (("cached", 256 << 20), ("uncached", 0))
    }
    for server in servers.values():
        server.__enter__()
    try:
        etags = {}
        for name in trees:
            url = servers[(name, "cached")].url + PAGE
            with urllib.request.urlopen(url) as reply:
                etags[name] = reply.headers["ETag"]
        rates: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for name in trees:
                for case in CASES:
                    server = servers[(name, "uncached" if case == "uncached" else "cached")]
                    headers = {"If-None-Match": etags[name]} if case == "304" else None
                    result = wrk(
                        server.url,
                        [PAGE],
                        seconds=args.seconds,
                        connections=8,
                        headers=headers,
                        expect=304 if case == "304" else 200,
                    )
                    rates.setdefault((name, case), []).append(result.rate)
    finally:
        for server in servers.values():
            server.__exit__(None, None, None)
    print(f"before: {trees['before']}\nafter:  {trees['after']}")
    print(f"wrk: 1 thread, 8 connections, {args.seconds:g} s a run, {args.rounds} rounds in turn\n")
    print(f"{'case':10} {'before':>9} {'after':>9}  after/before")
    for case in CASES:
        before = statistics.median(rates[("before", case)])
        after = statistics.median(rates[("after", case)])
        print(f"{case:10} {before:9,.0f} {after:9,.0f}  {100 * after / before:6.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
