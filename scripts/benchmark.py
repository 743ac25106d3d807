#!/usr/bin/env python3
"""Measure the gateway's speed with wrk and print the ratios, all from one run.

Side by side, on this machine, with the same load generator (``wrk``,
one thread, ``--connections`` keep-alive connections):

* a bare aiohttp server (uvloop) returning the very bytes of the page the
  gateway serves: the ceiling of any aiohttp server; and an empty 304 from
  it, the ceiling for a 304;
* the gateway answering from its response cache, and answering 304 to
  ``If-None-Match`` (these cached cases: on two cores or more, each
  server on a core of its own and wrk on the other);
* the gateway with its response cache off (``cache_bytes = 0``): random
  pages across the whole filtered list of the largest project (30 and 250
  a page), patch details, lists with common filters and orderings, and
  the same with an API token (identified reads, from the mirror);
* two server processes (``workers = 2``) against one, uncached;
* optionally a real upstream (``--upstream``) on the same paths as the
  uncached pages, when the mirror is a mirror of it;
* optionally the query mix on a large mirror (``--scale MIRROR``, see
  scripts/scale_bench.py).

The mirror is synthetic (scripts/generate_mirror.py, ``--patches``, kept
in ``--cache-dir`` between runs) unless ``--mirror`` names one.

    .venv/bin/python scripts/benchmark.py [--seconds 10] [--connections 8]
        [--patches 10000 | --mirror FILE] [--upstream URL] [--scale FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadgen import (
    ROOT,
    Result,
    Server,
    accepting_upstream,
    bare_server,
    gateway,
    require_wrk,
    wrk,
)

TOKEN = {"Authorization": "Token 0123456789abcdef0123456789abcdef01234567"}


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def last_page(base: str, path: str) -> int:
    _, headers, _ = get(base + path)
    match = re.search(r'[?&]page=(\d+)[^>]*>; rel="last"', headers.get("Link", ""))
    return int(match.group(1)) if match else 1


def mirror_for(args: argparse.Namespace) -> Path:
    if args.mirror:
        return Path(args.mirror).resolve()
    folder = Path(args.cache_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"mirror-{args.patches}.sqlite3"
    if not path.exists():
        from generate_mirror import generate

        print(f"generating a synthetic mirror of {args.patches:,} patches at {path} ...")
        partial = path.with_suffix(".partial")
        for stale in folder.glob(partial.name + "*"):
            stale.unlink()
        asyncio.run(generate(partial, args.patches))
        for suffix in ("-wal", "-shm"):
            Path(str(partial) + suffix).unlink(missing_ok=True)
        partial.rename(path)
    return path


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    wrk_version = subprocess.run(
        [require_wrk(), "-v"], capture_output=True, text=True, check=False
    ).stdout.split("\n")[0]
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB; Python {platform.python_version()}; "
        f"{wrk_version.strip()}"
    )


def paths_of(args: argparse.Namespace, base: str, mirror: Path) -> dict[str, list[str]]:
    """The request paths of each uncached case, from the mirror's content."""
    db = sqlite3.connect(mirror)
    try:
        (linkname,) = db.execute(
            "SELECT p.linkname FROM projects p JOIN patches t ON t.project_id = p.id "
            "GROUP BY p.id ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
        ids = [r[0] for r in db.execute("SELECT id FROM patches")]
        submitters = [
            r[0]
            for r in db.execute(
                "SELECT submitter_id FROM patches GROUP BY 1 ORDER BY count(*) DESC LIMIT 5"
            )
        ]
    finally:
        db.close()
    rng = random.Random(7)
    lists = f"/api/1.4/patches/?project={linkname}"
    pages30 = last_page(base, f"{lists}&per_page=30")
    pages250 = last_page(base, f"{lists}&per_page=250")
    filtered: list[str] = []
    for query in (
        f"project={linkname}&state=accepted",
        f"project={linkname}&archived=false&order=-date",
        f"submitter={submitters[0]}",
        f"submitter={submitters[1]}&order=name",
        "state=new&state=under-review",
        f"project={linkname}&order=-submitter",
    ):
        path = f"/api/1.4/patches/?{query}&per_page=30"
        pages = last_page(base, path)
        filtered += [f"{path}&page={n}" for n in range(1, pages + 1)]
    return {
        "pages30": [f"{lists}&per_page=30&page={n}" for n in range(1, pages30 + 1)],
        "pages250": [f"{lists}&per_page=250&page={n}" for n in range(1, pages250 + 1)],
        "details": [f"/api/1.4/patches/{i}/" for i in rng.sample(ids, min(5000, len(ids)))],
        "filtered": filtered,
        "deep": f"{lists}&per_page=30&page={max(1, pages30 - 1)}",
    }


def median_pair(pairs: list[tuple[Result, Result]]) -> tuple[Result, Result, float]:
    """Of (baseline, measured) passes: the round whose ratio is the median,
    and that ratio."""
    ordered = sorted(pairs, key=lambda pair: pair[1].rate / pair[0].rate)
    baseline, measured = ordered[len(ordered) // 2]
    return baseline, measured, measured.rate / baseline.rate


def row(
    name: str,
    result: Result,
    baseline: Result | None = None,
    note: str = "",
    ratio_of: float | None = None,
) -> dict:
    """One line of the table; ``ratio_of``: the ratio, when not this pass's."""
    if ratio_of is None and baseline is not None:
        ratio_of = result.rate / baseline.rate
    ratio = f"{100 * ratio_of:.0f} %" if ratio_of is not None else ""
    return {
        "case": name,
        "requests/s": round(result.rate),
        "p50 ms": round(result.p50_ms, 2),
        "p99 ms": round(result.p99_ms, 2),
        "ratio": ratio,
        "note": note,
        "errors": result.errors,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating bare/gateway rounds of the cached cases"
    )
    parser.add_argument("--patches", type=int, default=10_000)
    parser.add_argument("--mirror", help="an existing mirror to serve (else a synthetic one)")
    parser.add_argument("--cache-dir", default="~/.cache/patchwork-gateway-bench")
    parser.add_argument("--upstream", help="the Patchwork the mirror mirrors, to compare")
    parser.add_argument("--scale", help="a large mirror: run scripts/scale_bench.py on it")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    require_wrk()
    mirror = mirror_for(args)
    seconds, conns = args.seconds, args.connections
    rows: list[dict] = []
    print(f"machine: {machine()}")
    print(f"mirror: {mirror} ({mirror.stat().st_size / 2**20:.0f} MiB)")

    def measure(server: Server, paths: list[str], **kw: object) -> Result:
        return wrk(server.url, paths, seconds=seconds, connections=conns, **kw)  # type: ignore[arg-type]

    # The cached cases compare two servers each doing little per request:
    # on two cores or more, each server runs on a core of its own and wrk
    # on another, so that the ratio is the servers' and not the scheduler's.
    pinned = (os.cpu_count() or 1) >= 2
    load_cpu = {"cpu": 0} if pinned else {}

    def pin(server: Server) -> None:
        if pinned:
            server.pin(1)

    def run(server: Server, paths: list[str], **kw: object) -> Result:
        """A short pass first (not counted): a fresh process's own caches
        (parsed objects, encoded items, ordered ids) fill, as they do in
        the first seconds of any long-running server."""
        wrk(server.url, paths, seconds=2, connections=conns, **kw)  # type: ignore[arg-type]
        return measure(server, paths, **kw)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with accepting_upstream() as upstream:
            # 1. Cached: the response cache on, one deep page again and again.
            # Each gateway pass right after its bare pass, ``--rounds`` times
            # over: the ratio is the median of the rounds' ratios, so that a
            # slow spell of the machine weighs on both sides of one.
            with gateway(work, mirror, name="cached", upstream=upstream.url) as gw:
                pin(gw)
                paths = paths_of(args, gw.url, mirror)
                deep = paths["deep"]
                status, headers, body = get(gw.url + deep)
                assert status == 200, status
                etag = headers["ETag"]
                page = work / "page.json"
                page.write_bytes(body)
                status, _, _ = get(gw.url + deep, {"If-None-Match": etag})
                assert status == 304, status
                conditional = {"If-None-Match": etag}
                with bare_server(page) as bare:
                    pin(bare)
                    pairs: dict[str, list[tuple[Result, Result]]] = {"page": [], "304": []}
                    for number in range(args.rounds):
                        warm = run if number == 0 else measure
                        pairs["page"].append(
                            (warm(bare, [deep], **load_cpu), warm(gw, [deep], **load_cpu))
                        )
                        # (the bare server answers an empty 304 to If-None-Match)
                        pairs["304"].append(
                            (
                                warm(bare, [deep], headers=conditional, **load_cpu),
                                warm(gw, [deep], headers=conditional, **load_cpu),
                            )
                        )
                get(gw.url + deep, TOKEN)  # the token's check, once
                cached_token = run(gw, [deep], headers=TOKEN, **load_cpu)
            ceiling, cached, ratio = median_pair(pairs["page"])
            empty, not_modified, ratio304 = median_pair(pairs["304"])
            rounds = f"median of {args.rounds} rounds"
            rows.append(row(f"bare aiohttp, same {len(body):,} bytes", ceiling))
            rows.append(row("gateway, cached page", cached, ceiling, rounds, ratio))
            rows.append(row("bare aiohttp, empty 304", empty))
            rows.append(row("gateway, 304 Not Modified", not_modified, empty, rounds, ratio304))
            rows.append(row("gateway, cached page, with a token", cached_token, ceiling))

            # 2. Uncached: the response cache off.
            with gateway(work, mirror, name="uncached", cache_bytes=0, upstream=upstream.url) as gw:
                pages = paths["pages30"]
                one = run(gw, pages)
                rows.append(
                    row(
                        "uncached, 30-patch pages",
                        one,
                        note=f"{len(pages)} pages of the largest project, random order",
                    )
                )
                big = run(gw, paths["pages250"])
                rows.append(
                    row("uncached, 250-patch pages", big, note=f"{len(paths['pages250'])} pages")
                )
                details = run(gw, paths["details"])
                rows.append(row("uncached, patch details", details, note="5,000 random ids"))
                filtered = run(gw, paths["filtered"])
                rows.append(
                    row(
                        "uncached, filtered lists",
                        filtered,
                        note=f"{len(paths['filtered'])} pages: state, submitter, order",
                    )
                )
                get(gw.url + pages[0], TOKEN)
                token = run(gw, pages, headers=TOKEN)
                rows.append(row("uncached, 30-patch pages, with a token", token, one))
            with gateway(
                work, mirror, name="two", cache_bytes=0, workers=2, upstream=upstream.url
            ) as gw:
                two = run(gw, pages)
                rows.append(row("uncached, 30-patch pages, 2 workers", two, one))

        if args.upstream:
            base = args.upstream.rstrip("/")
            sample = random.Random(3).sample(pages, min(len(pages), 200))
            real = wrk(base, sample, seconds=seconds, connections=2)
            rows.append(row("upstream, 30-patch pages", real, note=base))
            rows.append(row("gateway uncached / upstream", one, real))

    print()
    width = max(len(r["case"]) for r in rows)
    print(f"{'case':<{width}}  {'req/s':>9}  {'p50 ms':>7}  {'p99 ms':>7}  {'ratio':>6}  note")
    for r in rows:
        errors = f" ({r['errors']} errors)" if r["errors"] else ""
        print(
            f"{r['case']:<{width}}  {r['requests/s']:>9,}  {r['p50 ms']:>7}  {r['p99 ms']:>7}"
            f"  {r['ratio']:>6}  {r['note']}{errors}"
        )
    print(
        f"\nwrk: 1 thread, {conns} connections, {seconds:g} s a case after 2 s of warm-up;"
        " uncached: the response cache off (cache_bytes = 0); ratios against the line"
        " above them in the same run (cached: bare aiohttp with the same bytes; 304: a bare"
        " empty 304 to the same request; token and 2 workers: the uncached 30-patch pages);"
        f" the cached page and the 304: {args.rounds} rounds, each gateway pass right after"
        " its bare one, the round of the median ratio shown"
        + ("; the cached cases: each server on core 1, wrk on core 0." if pinned else ".")
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    if args.scale:
        print()
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "scale_bench.py"), "--mirror", args.scale],
            check=True,
        )
    failed = [r["case"] for r in rows if r["errors"]]
    if failed:
        print(f"errors in: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
