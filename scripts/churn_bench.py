#!/usr/bin/env python3
"""Reads while the mirror changes: ``wrk`` against the gateway, caches on, with a writer.

    .venv/bin/python scripts/churn_bench.py --mirror /path/mirror.sqlite3 \\
        [--seconds 10] [--mix-seconds 20] [--connections 16] [--rates 0,1] \\
        [--mix-rates 0,1,5] [--urls 400] [--only KIND]... [--json FILE]

A live mirror changes all the time: CI bots add checks, maintainers change
states, new patches arrive.  This runs ``patchwork-gateway serve`` on the
mirror with its caches as configured by default (the response cache on)
and, while wrk cycles through the URLs of one kind of query, a writer
changes the mirror through ``mirror.store`` the way the sync does, at a
given number of writes a second: a patch's state (with its event), a new
check (with the patch's check summary and the event), a new comment, a new
patch in a series (with the series and the event), in turn.  Four writes
in five go to the newest patches of the busiest project, as on a real
instance.

Measured for each kind of ``scripts/scale_bench.py`` and for a CI poll mix
(events since a date by category, a project's not-archived patches in
active states since a date, newest series, patch and series details, a
patch's checks and comments), at each rate: requests/s, p50, p99 and the
share of answers found in the response cache (from /metrics), side by
side.  Each kind's URLs are first read once each (their first reads, which
no cache serves, are timed and shown apart: ``scripts/scale_bench.py``
measures uncached reads), and each measurement follows a short warm-up, as
a live server has seen its pollers' URLs before.

The writer adds what it writes to the mirror (a few objects a second,
with new ids and dates after the newest): run it on a copy if that
matters.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import json
import os
import random
import re
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scale_bench import (
    API,
    EVENT_CATEGORIES,
    Gateway,
    Mirror,
    Result,
    lua_script,
    run_wrk,
    size_on_disk,
    status_of,
    url,
    url_lists,
)

from mirror import schema, store
from mirror.store import Batch

MIX = "CI poll mix"
ACTIVE = ("new", "under-review")
STATES = ("new", "under-review", "accepted", "changes-requested", "rejected")


# -- the writer ------------------------------------------------------------------------


class Churn:
    """Writes through ``mirror.store`` at ``rate`` a second, in a thread of
    its own (the benchmark's main thread only waits for wrk)."""

    def __init__(self, path: Path, seed: int) -> None:
        self.path = path
        self.rng = random.Random(seed)
        self.writes = 0
        self.seconds = 0.0  # spent in store.write
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            self._learn(db)
        finally:
            db.close()

    def _learn(self, db: sqlite3.Connection) -> None:
        one = lambda sql, *args: db.execute(sql, args).fetchone()  # noqa: E731
        (self.busy,) = one(
            "SELECT project_id FROM patches GROUP BY project_id ORDER BY count(*) DESC LIMIT 1"
        )
        self.projects = [r[0] for r in db.execute("SELECT id FROM projects")]
        self.recent: dict[int, list[int]] = {}
        for project in self.projects:
            self.recent[project] = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM patches WHERE project_id = ? ORDER BY id DESC LIMIT 300",
                    (project,),
                )
            ]
        self.next_id = {
            table: one(f"SELECT coalesce(max(id), 0) FROM {table}")[0] + 1_000_000
            for table in ("patches", "checks", "patch_comments", "events")
        }
        newest = one("SELECT max(date) FROM events")[0] or "2025-01-01T00:00:00"
        self.clock = calendar.timegm(time.strptime(newest[:19], "%Y-%m-%dT%H:%M:%S")) + 60
        self.check = self._template(db, "checks")
        self.comment = self._template(db, "patch_comments")

    @staticmethod
    def _template(db: sqlite3.Connection, table: str) -> dict[str, Any]:
        row = db.execute(f"SELECT doc, detail FROM {table} ORDER BY id DESC LIMIT 1").fetchone()
        doc = json.loads(row[0])
        doc.update(json.loads(row[1]) if row[1] else {})
        return doc

    def _new_id(self, table: str) -> int:
        self.next_id[table] += 1
        return self.next_id[table]

    def _date(self) -> str:
        self.clock += 1.5
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.clock))

    def _event(self, batch: Batch, category: str, project: int, **payload: Any) -> None:
        doc = {"id": self._new_id("events"), "category": category, "project": project}
        doc.update(date=self._date() + ".000000", actor=None, **payload)
        batch.add("events", doc)

    async def _batch(self, db: Any, n: int) -> Batch:
        rng = self.rng
        project = self.busy if rng.random() < 0.8 else rng.choice(self.projects)
        patch = rng.choice(self.recent[project] or self.recent[self.busy])
        batch = Batch()
        kind = n % 4
        if kind == 0:
            state = rng.choice(STATES)
            batch.add("patches", {"id": patch, "state": state})
            self._event(batch, "patch-state-changed", project, patch=patch, current_state=state)
        elif kind == 1:
            check = dict(self.check, id=self._new_id("checks"), patch=patch, date=self._date())
            check["state"] = rng.choice(("success", "warning", "fail"))
            batch.add("checks", check)
            batch.add("patches", {"id": patch, "check": check["state"]})
            self._event(batch, "check-created", project, patch=patch, created_check=check["id"])
        elif kind == 2:
            comment_id = self._new_id("patch_comments")
            comment = dict(self.comment, id=comment_id, patch=patch, date=self._date())
            comment["msgid"] = f"<churn-{comment_id}@example.org>"
            batch.add("patch_comments", comment)
            self._event(
                batch, "patch-comment-created", project, patch=patch, patch_comment=comment_id
            )
        else:
            (raw,) = next(
                iter(await db.execute_fetchall("SELECT doc FROM patches WHERE id = ?", (patch,)))
            )
            doc = json.loads(raw)
            new = self._new_id("patches")
            series = (doc.get("series") or [None])[0]
            doc.update(id=new, date=self._date(), state="new", archived=False, check="pending")
            doc.update(msgid=f"<churn-{new}@example.org>", hash=f"{new:040x}")
            doc["name"] = f"[PATCH] churn {new}"
            batch.add("patches", doc)
            self.recent[project].insert(0, new)
            if series is not None:
                rows = await db.execute_fetchall("SELECT doc FROM series WHERE id = ?", (series,))
                for (found,) in rows:
                    patches = [*json.loads(found).get("patches", []), new]
                    batch.add("series", {"id": series, "patches": patches})
            self._event(batch, "patch-created", project, patch=new)
        return batch

    async def _run(self, rate: float) -> None:
        db = await schema.connect(self.path)
        try:
            started = time.monotonic()
            n = 0
            while not self._stop.is_set():
                batch = await self._batch(db, self.writes)
                began = time.perf_counter()
                await store.write(db, batch)
                self.seconds += time.perf_counter() - began
                self.writes += 1
                n += 1
                pause = started + n / rate - time.monotonic()
                if pause > 0:
                    await asyncio.to_thread(self._stop.wait, pause)
        finally:
            await db.close()

    def start(self, rate: float) -> None:
        self._stop.clear()
        if rate > 0:
            self._thread = threading.Thread(target=asyncio.run, args=(self._run(rate),))
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


# -- the poll mix ------------------------------------------------------------------------


def poll_mix(m: Mirror, n: int) -> list[str]:
    """What CI bots poll: ``n`` URLs, in a random order."""
    rng = m.rng
    projects = m.rows(
        "SELECT p.id, p.linkname FROM projects p JOIN patches x ON x.project_id = p.id "
        "GROUP BY p.id ORDER BY count(*) DESC"
    )
    newest_event = m.rows("SELECT max(date) FROM events")[0][0]
    newest_patch = m.rows("SELECT max(date) FROM patches")[0][0]

    def since(newest: str, hours: float) -> str:
        stamp = calendar.timegm(time.strptime(newest[:19], "%Y-%m-%dT%H:%M:%S"))
        return time.strftime(
            "%Y-%m-%dT%H:%M:%S", time.gmtime(stamp - rng.uniform(60, hours * 3600))
        )

    def project() -> str:
        # The busiest project half of the time, as its bots are the most.
        return projects[0][1] if rng.random() < 0.5 else rng.choice(projects)[1]

    recent = [r[0] for r in m.rows("SELECT id FROM patches ORDER BY id DESC LIMIT 3000")]
    older = m.sample_ids("patches", 500)
    series = [r[0] for r in m.rows("SELECT id FROM series ORDER BY id DESC LIMIT 1000")]
    checked = m.column("checks", "patch_id", m.sample_ids("checks", 200)) or recent
    commented = m.column("patch_comments", "patch_id", m.sample_ids("patch_comments", 200))
    commented = commented or recent

    def patch() -> int:
        return rng.choice(recent if rng.random() < 0.7 else older)

    makers = [
        (0.2, lambda: url(f"{API}/events/", project=project(),
                          category=rng.choice(("patch-created", "series-completed",
                                               "check-created", *EVENT_CATEGORIES[:2])),
                          since=since(newest_event, 48))),
        (0.2, lambda: url(f"{API}/patches/", project=project(), archived="false",
                          since=since(newest_patch, 72))
                      + "".join(f"&state={state}" for state in ACTIVE)),
        (0.1, lambda: url(f"{API}/series/", project=project(), order="-id")),
        (0.2, lambda: f"{API}/patches/{patch()}/"),
        (0.1, lambda: f"{API}/series/{rng.choice(series)}/"),
        (0.1, lambda: f"{API}/patches/{rng.choice(checked + recent[:50])}/checks/"),
        (0.1, lambda: f"{API}/patches/{rng.choice(commented + recent[:50])}/comments/"),
    ]  # fmt: skip
    weights = [w for w, _ in makers]
    return [rng.choices(makers, weights)[0][1]() for _ in range(n)]


# -- measuring ------------------------------------------------------------------------------


@dataclass
class Run(Result):
    rate: float = 0.0
    writes: int = 0
    write_ms: float = 0.0
    hit_share: float = 0.0


def cache_counts(base: str) -> tuple[float, float]:
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    found = {}
    for name in ("hits", "misses"):
        match = re.search(rf"^patchwork_gateway_response_cache_{name}_total (\S+)$", text, re.M)
        found[name] = float(match.group(1)) if match else 0.0
    return found["hits"], found["misses"]


def prime(base: str, paths: list[str]) -> list[float]:
    """Read each distinct URL once, as a live server has: the seconds each
    first read took (none cached yet), slowest last."""
    took = []
    for path in dict.fromkeys(paths):
        started = time.monotonic()
        status_of(base, path, timeout=120)  # (wrk counts what fails)
        took.append(time.monotonic() - started)
    return sorted(took)


def measure(
    server: Gateway, churn: Churn, kind: str, paths: list[str], rate: float, seconds: float,
    args: argparse.Namespace, script: Path,
) -> Run:  # fmt: skip
    script.write_text(lua_script(paths))
    run = Run(kind, len(set(paths)), rate=rate)
    warm = Result(kind, 0)
    run_wrk(server.base, script, args.warmup, args.connections, warm)
    churn.start(rate)
    try:
        time.sleep(0.2)  # (the first write lands while wrk runs)
        hits, misses = cache_counts(server.base)
        writes, spent = churn.writes, churn.seconds
        run_wrk(server.base, script, seconds, args.connections, run)
        time.sleep(1.2)  # (the metrics are published every second)
        hits2, misses2 = cache_counts(server.base)
    finally:
        churn.stop()
    run.writes = churn.writes - writes
    run.write_ms = 1000 * (churn.seconds - spent) / max(run.writes, 1)
    looked = (hits2 - hits) + (misses2 - misses)
    run.hit_share = (hits2 - hits) / looked if looked else 0.0
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk seconds per kind")
    parser.add_argument("--mix-seconds", type=float, default=20.0, help="wrk seconds, poll mix")
    parser.add_argument("--warmup", type=float, default=2.0, help="wrk seconds before each")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rates", default="0,1", help="writes a second, per kind")
    parser.add_argument("--mix-rates", default="0,1,5", help="writes a second, poll mix")
    parser.add_argument("--urls", type=int, default=400, help="distinct URLs per kind")
    parser.add_argument(
        "--only", action="append", default=[], help="a kind to run ('mix': the poll mix)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found (apt-get install wrk)", file=sys.stderr)
        return 2
    mirror = args.mirror.resolve()
    if not mirror.exists():
        print(f"{mirror}: no such file (make one with scripts/generate_mirror.py)", file=sys.stderr)
        return 2
    rates = [float(r) for r in args.rates.split(",")]
    mix_rates = [float(r) for r in args.mix_rates.split(",")]

    m = Mirror(mirror, random.Random(args.seed))
    try:
        counts = m.counts()
        lists = {MIX: poll_mix(m, args.urls), **url_lists(m, args.urls)}
    finally:
        m.close()
    if args.only:
        wanted = {MIX if k == "mix" else k for k in args.only}
        unknown = wanted - set(lists)
        if unknown:
            print(f"unknown kinds: {', '.join(sorted(unknown))}", file=sys.stderr)
            print("kinds: mix, " + ", ".join(k for k in lists if k != MIX), file=sys.stderr)
            return 2
        lists = {k: v for k, v in lists.items() if k in wanted}
    churn = Churn(mirror, args.seed)
    print(
        f"mirror {mirror}: {size_on_disk(mirror) / 2**20:,.0f} MiB, "
        f"{counts['patches']:,} patches; writes go to project {churn.busy} (4 in 5)",
        flush=True,
    )
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="churn-bench-") as tmp:
        server = Gateway(mirror, Path(tmp), cache_bytes=None)
        try:
            server.start()
            for kind, paths in lists.items():
                took = prime(server.base, paths)
                print(
                    f"  {kind}: {len(took)} first reads in {sum(took):.1f} s, "
                    f"p50 {1000 * took[len(took) // 2]:.1f} ms, slowest {1000 * took[-1]:.0f} ms",
                    flush=True,
                )
                for rate in mix_rates if kind == MIX else rates:
                    seconds = args.mix_seconds if kind == MIX else args.seconds
                    run = measure(
                        server, churn, kind, paths, rate, seconds, args, Path(tmp) / "urls.lua"
                    )
                    runs.append(run)
                    print(_line(run), flush=True)
            rss = server.memory()
            tail = server.log_tail()
        finally:
            server.stop()
    report(runs, rss, server.peak, args)
    if tail.strip():
        print("\ngateway log (tail):\n" + tail)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"mirror": str(mirror), "rows": counts, "memory": rss, "peak": server.peak,
                 "connections": args.connections, "runs": [asdict(r) for r in runs]},
                indent=2,
            ) + "\n"
        )  # fmt: skip
    return 1 if any(r.non_2xx or r.socket_errors for r in runs) else 0


def _line(r: Run) -> str:
    bad = f"  non-2xx {r.non_2xx + r.socket_errors}" if r.non_2xx or r.socket_errors else ""
    return (
        f"  {r.kind:<36} {r.rate:>3g}/s {r.rps:9.0f} req/s  p50 {r.p50_ms:7.2f}  "
        f"p99 {r.p99_ms:8.2f} ms  hits {100 * r.hit_share:5.1f}%  "
        f"({r.writes} writes, {r.write_ms:.1f} ms each){bad}"
    )


def report(runs: list[Run], rss: dict[str, int], peak: int, args: argparse.Namespace) -> None:
    """One row per kind: each rate side by side."""
    print(f"\nwrk: {args.connections} connections; response cache on (default size)")
    by_kind: dict[str, list[Run]] = {}
    for r in runs:
        by_kind.setdefault(r.kind, []).append(r)
    # One table per set of rates (the poll mix has its own).
    tables: dict[tuple[float, ...], list[str]] = {}
    for kind, group in by_kind.items():
        tables.setdefault(tuple(r.rate for r in group), []).append(kind)
    for rates, kinds in tables.items():
        head = ["kind"]
        for rate in rates:
            head += [f"{rate:g} w/s: req/s", "p50 ms", "p99 ms", "cached"]
        print("\n| " + " | ".join(head) + " |")
        print("|---|" + "---:|" * (len(head) - 1))
        for kind in kinds:
            cells = [kind]
            for r in by_kind[kind]:
                cells += [
                    f"{r.rps:,.0f}",
                    f"{r.p50_ms:.2f}",
                    f"{r.p99_ms:.1f}",
                    f"{100 * r.hit_share:.0f}%",
                ]
            print("| " + " | ".join(cells) + " |")
    mib = 2**20
    print(
        f"\nserver RSS at the end {rss['VmRSS'] / mib:.0f} MiB (file-backed "
        f"{rss.get('RssFile', 0) / mib:.0f} MiB), peak {peak / mib:.0f} MiB"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
