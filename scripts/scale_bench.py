#!/usr/bin/env python3
"""The query mix at scale: ``wrk`` against ``patchwork-gateway serve`` on a big mirror.

    .venv/bin/python scripts/scale_bench.py --mirror /path/mirror.sqlite3 \\
        [--seconds 10] [--connections 2] [--urls 3000] [--seed 1] [--json FILE] \\
        [--only KIND,KIND]

Make a mirror with ``scripts/generate_mirror.py``.  The gateway is started
on it as its own process with the response cache off (``cache_bytes = 0``;
the reader's caches of parsed documents and counts stay at their
defaults), and an unreachable upstream (anonymous reads never go there).
For each kind of query a list of URLs is drawn from the mirror's content
(random, seeded) and ``wrk`` cycles through it for ``--seconds`` with few
connections, so the latencies are those of single requests.  Reported per
kind: requests per second, p50/p90/p99 latency, mean response size, and
answers that were not 2xx/3xx; then the mirror's size, its rows per table
and the server's peak and final RSS.

People and users are not measured: anonymous callers get 403 there and a
token is checked upstream, which this run does not have.
"""

from __future__ import annotations

import argparse
import calendar
import json
import math
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadgen import ROOT, free_port, stop

from mirror.resources import RESOURCES

TABLES = tuple(res.table for res in RESOURCES.values())
STATES = ("new", "under-review", "accepted", "changes-requested", "superseded", "rejected")
EVENT_CATEGORIES = (
    "patch-created",
    "patch-state-changed",
    "patch-delegated",
    "check-created",
    "series-created",
    "series-completed",
    "cover-created",
    "patch-comment-created",
)
API = "/api/1.4"


# -- what the mirror holds ------------------------------------------------------


class Mirror:
    """Read-only facts about the mirror, for drawing URLs."""

    def __init__(self, path: Path, rng: random.Random) -> None:
        self.path = path
        self.rng = rng
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def close(self) -> None:
        self.db.close()

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.db.execute(sql, args).fetchall()

    def counts(self) -> dict[str, int]:
        return {t: self.rows(f"SELECT count(*) FROM {t}")[0][0] for t in TABLES}

    def max_id(self, table: str) -> int:
        return int(self.rows(f"SELECT coalesce(max(id), 0) FROM {table}")[0][0])

    def sample_ids(self, table: str, n: int, where: str = "") -> list[int]:
        """Up to ``n`` random existing ids (drawn from the id range)."""
        top = self.max_id(table)
        if not top:
            return []
        wanted = sorted({self.rng.randint(1, top) for _ in range(n * 2)})
        found: list[int] = []
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            cond = f" AND {where}" if where else ""
            found += [
                r[0]
                for r in self.rows(
                    f"SELECT id FROM {table} WHERE id IN ({marks}){cond}", tuple(chunk)
                )
            ]
        self.rng.shuffle(found)
        return found[:n]

    def column(self, table: str, column: str, ids: list[int]) -> list[Any]:
        out: list[Any] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            out += [
                r[0]
                for r in self.rows(
                    f"SELECT {column} FROM {table} WHERE id IN ({marks})", tuple(chunk)
                )
            ]
        self.rng.shuffle(out)
        return out


def size_on_disk(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


# -- the URL lists ---------------------------------------------------------------


def url(path: str, **params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{path}?{query}" if query else path


def url_lists(m: Mirror, n: int) -> dict[str, list[str]]:
    """Per query kind, up to ``n`` URLs drawn from the mirror's content."""
    rng = m.rng
    projects = m.rows(
        "SELECT p.id, p.linkname, count(x.id) FROM projects p "
        "LEFT JOIN patches x ON x.project_id = p.id GROUP BY p.id ORDER BY 3 DESC"
    )
    weights = [max(c, 1) for _, _, c in projects]
    _, big_link, big_count = projects[0]

    def project() -> tuple[int, str, int]:
        return rng.choices(projects, weights)[0]

    def pick_project() -> Any:
        pid, link, _ = project()
        return link if rng.random() < 0.5 else pid

    def pages(count: int, per_page: int) -> int:
        return max(1, math.ceil(count / per_page))

    newest_patch = m.rows("SELECT max(date) FROM patches")[0][0] or "2025-01-01T00:00:00"
    newest_event = m.rows("SELECT max(date) FROM events")[0][0] or newest_patch

    def recent(newest: str, days: float) -> str:
        stamp = calendar.timegm(time.strptime(newest[:19], "%Y-%m-%dT%H:%M:%S"))
        back = rng.uniform(60, days * 86400)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp - back))

    patch_ids = m.sample_ids("patches", n)
    lists: dict[str, list[str]] = {}

    def kind(name: str, make: Callable[[], str], count: int = n) -> None:
        lists[name] = [make() for _ in range(count)]

    # Every project, by id and by link name.
    lists["patches p1 by project"] = [
        url(f"{API}/patches/", project=key) for pid, link, _ in projects for key in (pid, link)
    ]
    kind(
        "patches deep pages, big project",
        lambda: url(f"{API}/patches/", project=big_link, page=rng.randint(1, pages(big_count, 30))),
    )

    def deep_any(per_page: int) -> str:
        _, link, count = project()
        return url(
            f"{API}/patches/",
            project=link,
            per_page=per_page,
            page=rng.randint(1, pages(count, per_page)),
        )

    kind("patches deep pages, any project", lambda: deep_any(30))
    kind("patches per_page=250", lambda: deep_any(250))
    # (Pages that exist: patch ids leave gaps, so not the largest id.)
    patch_count = int(m.rows("SELECT count(*) FROM patches")[0][0])
    kind(
        "patches all projects, deep",
        lambda: url(f"{API}/patches/", page=rng.randint(1, pages(patch_count, 30))),
        min(n, 500),
    )
    kind(
        "filter state",
        lambda: url(f"{API}/patches/", project=pick_project(), state=rng.choice(STATES)),
    )
    kind(
        "filter state+archived=false",
        lambda: url(
            f"{API}/patches/",
            project=pick_project(),
            state=rng.choice(STATES[:4]),
            archived="false",
        ),
    )
    kind(
        "filter archived=false, pages",
        lambda: url(
            f"{API}/patches/", project=pick_project(), archived="false", page=rng.randint(1, 5)
        ),
    )

    submitters = m.rows(
        "SELECT x.submitter_id, p.email FROM (SELECT submitter_id, count(*) AS c "
        "FROM patches GROUP BY submitter_id ORDER BY c DESC) AS x "
        "JOIN people p ON p.id = x.submitter_id"
    )
    # Busy submitters more often: half of the draws from the top 2 %.
    top = submitters[: max(1, len(submitters) // 50)]

    def submitter() -> tuple[int, str]:
        return rng.choice(top if rng.random() < 0.5 else submitters)

    kind("filter submitter id", lambda: url(f"{API}/patches/", submitter=submitter()[0]))
    kind("filter submitter email", lambda: url(f"{API}/patches/", submitter=submitter()[1]))
    # Someone's patches in a project they send to.
    pairs = m.rows(
        "SELECT project_id, submitter_id FROM patches WHERE id IN "
        f"({','.join(str(i) for i in patch_ids)})"
    )

    def own_project() -> str:
        project_id, submitter_id = rng.choice(pairs)
        return url(f"{API}/patches/", project=project_id, submitter=submitter_id)

    kind("filter submitter+project", own_project)
    delegates = m.rows(
        "SELECT u.id, u.username FROM users u WHERE u.id IN "
        "(SELECT DISTINCT delegate_id FROM patches WHERE delegate_id IS NOT NULL)"
    ) or [(1, "nobody")]
    kind(
        "filter delegate",
        lambda: url(
            f"{API}/patches/",
            delegate=rng.choice(delegates)[rng.randrange(2)],
            archived=rng.choice(("false", None)),
        ),
    )
    series_ids = m.sample_ids("series", n)
    kind("filter series", lambda: url(f"{API}/patches/", series=rng.choice(series_ids)))
    msgids = m.column("patches", "msgid", patch_ids)
    kind("filter msgid", lambda: url(f"{API}/patches/", msgid=rng.choice(msgids)[1:-1]))
    hashes = m.column("patches", "hash", patch_ids)
    kind("filter hash", lambda: url(f"{API}/patches/", hash=rng.choice(hashes)))
    for order in ("-date", "name", "-id", "submitter"):

        def ordered(order: str = order) -> str:
            project = pick_project() if rng.random() < 0.7 else None
            return url(f"{API}/patches/", project=project, order=order, page=rng.randint(1, 10))

        kind(f"order={order}", ordered)
    kind(
        "since patches (CI poll)",
        lambda: url(f"{API}/patches/", project=pick_project(), since=recent(newest_patch, 3)),
    )
    kind("since events (CI poll)", lambda: url(f"{API}/events/", since=recent(newest_event, 1)))
    kind(
        "since events by project+category",
        lambda: url(
            f"{API}/events/",
            project=pick_project(),
            category=rng.choice(EVENT_CATEGORIES[:4]),
            since=recent(newest_event, 2),
        ),
    )

    names = m.column("patches", "name", patch_ids[:500])
    words = sorted(
        {
            w
            for name in names
            for w in re.findall(r"[A-Za-z][A-Za-z0-9_-]{3,}", name.split("] ")[-1])
        }
    )

    def search() -> str:
        terms = rng.sample(words, 1 if rng.random() < 0.6 else 2)
        return url(f"{API}/patches/", q=" ".join(terms), project=rng.choice((None, big_link)))

    kind("q search", search)

    kind("patch detail", lambda: f"{API}/patches/{rng.choice(patch_ids)}/")
    cover_ids = m.sample_ids("covers", n)
    kind("cover detail", lambda: f"{API}/covers/{rng.choice(cover_ids)}/")
    kind("series detail", lambda: f"{API}/series/{rng.choice(series_ids)}/")
    checked = m.column("checks", "patch_id", m.sample_ids("checks", n))
    kind("patch checks", lambda: f"{API}/patches/{rng.choice(checked)}/checks/")
    commented = m.column("patch_comments", "patch_id", m.sample_ids("patch_comments", n))
    kind("patch comments", lambda: f"{API}/patches/{rng.choice(commented)}/comments/")
    cover_commented = (
        m.column("cover_comments", "cover_id", m.sample_ids("cover_comments", n)) or cover_ids
    )
    kind("cover comments", lambda: f"{API}/covers/{rng.choice(cover_commented)}/comments/")
    kind(
        "events by category+project",
        lambda: url(
            f"{API}/events/",
            category=rng.choice(EVENT_CATEGORIES),
            project=rng.choice((None, pick_project())),
            page=rng.choice((1, 1, 1, 2, 3)),
        ),
    )
    events_count = int(m.rows("SELECT count(*) FROM events")[0][0])
    kind(
        "events deep pages",
        lambda: url(f"{API}/events/", page=rng.randint(1, pages(events_count, 30))),
        min(n, 500),
    )
    for table in ("series", "covers"):
        per_project = dict(m.rows(f"SELECT project_id, count(*) FROM {table} GROUP BY 1"))

        def listing(table: str = table, per_project: dict[int, int] = per_project) -> str:
            pid, link, _ = project()
            last = pages(per_project.get(pid, 0), 30)
            return url(f"{API}/{table}/", project=link, page=rng.randint(1, last))

        kind(f"{table} list", listing)
    kind("bundles list", lambda: url(f"{API}/bundles/", page=rng.choice((1, 1, 2))), 10)
    kind("projects list", lambda: f"{API}/projects/", 1)
    kind(
        "api 1.0 patches pages",
        lambda: url("/api/1.0/patches/", project=pick_project(), page=rng.randint(1, 20)),
    )
    kind("api 1.0 patch detail", lambda: f"/api/1.0/patches/{rng.choice(patch_ids)}/")
    return lists


# -- the gateway -------------------------------------------------------------------


#: ``python -m cli.main`` without that string on the command line, so
#: that a broad ``pkill -f cli.main`` by another job on the machine does
#: not take this server down mid-run (it happened).
LAUNCH = "import sys; from cli import main; sys.exit(main.main())"


class Gateway:
    """``patchwork-gateway serve`` on the mirror, as its own process."""

    def __init__(self, mirror: Path, workdir: Path, cache_bytes: int | None = 0) -> None:
        """``cache_bytes``: the response cache's size (None: as configured
        by default)."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "gateway.toml"
        self.log = workdir / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        #: Peak RSS over every process started (a restart starts anew).
        self.peak = 0
        self.config.write_text(
            "\n".join(
                (
                    "[upstream]",
                    # Serving an existing mirror needs an upstream (no URL
                    # means the demo); anonymous reads never go there.
                    'url = "http://127.0.0.1:9"',
                    "[storage]",
                    f"path = {json.dumps(str(mirror))}",
                    "[server]",
                    'host = "127.0.0.1"',
                    f"port = {self.port}",
                    *([] if cache_bytes is None else [f"cache_bytes = {cache_bytes}"]),
                    "[logging]",
                    'level = "warning"',
                    "",
                )
            )
        )

    def start(self) -> float:
        """Start and wait until it answers; the seconds that took."""
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", LAUNCH, "serve", "--config", str(self.config)],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        # Opening migrates the file if this build's schema is newer: on a big
        # mirror, building new indexes takes minutes.
        deadline = started + 3600
        said = False
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}/api/", timeout=5) as resp:
                    if resp.status == 200:
                        return time.monotonic() - started
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the gateway did not answer within an hour")
            if not said and time.monotonic() - started > 10:
                print("  waiting for the gateway (migrating the mirror?)", flush=True)
                said = True
            time.sleep(0.2)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def restart(self) -> None:
        self.restarts += 1
        self.stop()
        self.start()

    def memory(self) -> dict[str, int]:
        assert self.proc is not None
        found = memory(self.proc.pid)
        self.peak = max(self.peak, found.get("VmHWM", 0))
        return found

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.memory()
            stop(self.proc)
        self.proc = None


def memory(pid: int) -> dict[str, int]:
    """VmHWM, VmRSS and its anonymous and file-backed (mmap) parts, in bytes."""
    found = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                found[key] = int(value.split()[0]) * 1024
    return found


def status_of(base: str, path: str, timeout: float = 60) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(base + path, timeout=timeout) as resp:
            return resp.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(300).decode("utf-8", "replace")
    except OSError as exc:
        return 0, str(exc)


# -- wrk -------------------------------------------------------------------------------


@dataclass
class Result:
    kind: str
    urls: int
    requests: int = 0
    rps: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    mean_bytes: int = 0
    non_2xx: int = 0
    socket_errors: int = 0
    #: Statuses other than 200 seen when checking a sample of the URLs.
    sample_statuses: dict[str, int] = field(default_factory=dict)
    sample_error: str = ""
    #: The server died during the first try (see the output).
    restarted: bool = False


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}
_SIZES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def lua_script(paths: list[str]) -> str:
    listed = ",\n".join(json.dumps(p) for p in paths)
    return (
        f"local paths = {{\n{listed}\n}}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i + 1\n"
        "  if i > #paths then i = 1 end\n"
        '  return wrk.format("GET", paths[i])\n'
        "end\n"
    )


def run_wrk(base: str, script: Path, seconds: float, connections: int, result: Result) -> str:
    args = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "60s",
        "--latency",
        "-s",
        str(script),
        base,
    ]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] in ("50%", "90%", "99%"):
            setattr(result, f"p{words[0][:-1]}_ms", _ms(words[1]))
        elif "requests in" in line:
            result.requests = int(words[0])
            size = re.search(r"([0-9.]+)([KMG]?B) read", line)
            if size and result.requests:
                read = float(size.group(1)) * _SIZES[size.group(2)]
                result.mean_bytes = round(read / result.requests)
        elif line.startswith("Requests/sec:"):
            result.rps = float(words[1])
        elif "Non-2xx or 3xx responses:" in line:
            result.non_2xx = int(words[-1])
        elif "Socket errors:" in line:
            result.socket_errors = sum(int(n) for n in re.findall(r"\d+", line))
    return out


def measure(server: Gateway, name: str, paths: list[str], args: Any, script: Path) -> Result:
    """Check a sample of the URLs, then drive them all with wrk."""
    result = Result(name, len(set(paths)))
    for path in paths[: args.check]:
        status, body = status_of(server.base, path)
        if status != 200:
            key = str(status)
            result.sample_statuses[key] = result.sample_statuses.get(key, 0) + 1
            result.sample_error = result.sample_error or f"{path}: {body[:200]}"
    script.write_text(lua_script(paths))
    run_wrk(server.base, script, args.seconds, args.connections, result)
    return result


# -- the run ---------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", type=Path, required=True, help="the mirror to serve")
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk duration per kind")
    parser.add_argument("--connections", type=int, default=2, help="wrk connections")
    parser.add_argument("--urls", type=int, default=3000, help="distinct URLs per kind")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", default="", help="comma-separated kinds to run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--check", type=int, default=20, help="URLs per kind checked first")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found (apt-get install wrk)", file=sys.stderr)
        return 2
    mirror: Path = args.mirror.resolve()
    if not mirror.exists():
        print(f"{mirror}: no such file (make one with scripts/generate_mirror.py)", file=sys.stderr)
        return 2

    started = time.monotonic()
    m = Mirror(mirror, random.Random(args.seed))
    try:
        counts = m.counts()
        lists = url_lists(m, args.urls)
    finally:
        m.close()
    if args.only:
        wanted = {k.strip() for k in args.only.split(",")}
        unknown = wanted - set(lists)
        if unknown:
            print(f"unknown kinds: {', '.join(sorted(unknown))}", file=sys.stderr)
            print("kinds: " + ", ".join(lists), file=sys.stderr)
            return 2
        lists = {k: v for k, v in lists.items() if k in wanted}
    disk = size_on_disk(mirror)
    print(
        f"mirror {mirror}: {disk / 2**20:,.1f} MiB (file + WAL); "
        f"URL lists drawn in {time.monotonic() - started:.1f} s",
        flush=True,
    )

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        server = Gateway(mirror, Path(tmp))
        try:
            start_seconds = server.start()
            start_memory = server.memory()
            for name, paths in lists.items():
                result = measure(server, name, paths, args, Path(tmp) / "urls.lua")
                if not server.alive():
                    # Killed from outside (or crashed): say so, start it
                    # again and measure this kind anew.
                    print(f"  the gateway died during {name!r}; restarting it", flush=True)
                    print(server.log_tail(), flush=True)
                    server.restart()
                    result = measure(server, name, paths, args, Path(tmp) / "urls.lua")
                    result.restarted = True
                results.append(result)
                flag = f"  non-2xx {result.non_2xx}" if result.non_2xx else ""
                print(
                    f"  {name:<36} {result.rps:9.1f} req/s  p50 {result.p50_ms:8.2f} ms  "
                    f"p99 {result.p99_ms:8.2f} ms{flag}",
                    flush=True,
                )
            end_memory = server.memory()
            log_tail = server.log_tail()
        finally:
            server.stop()
    end_memory["peak"] = server.peak
    end_memory["restarts"] = server.restarts

    report(results, counts, disk, start_memory, end_memory, start_seconds, args)
    if log_tail.strip():
        print("\ngateway log (tail):\n" + log_tail)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "mirror": str(mirror),
                    "mirror_bytes": disk,
                    "rows": counts,
                    "server_start_seconds": round(start_seconds, 2),
                    "server_memory_start": start_memory,
                    "server_memory_end": end_memory,
                    "seconds_per_kind": args.seconds,
                    "connections": args.connections,
                    "results": [asdict(r) for r in results],
                },
                indent=2,
            )
            + "\n"
        )
    return 1 if any(r.non_2xx or r.socket_errors for r in results) else 0


def report(
    results: list[Result],
    counts: dict[str, int],
    disk: int,
    start_memory: dict[str, int],
    end_memory: dict[str, int],
    start_seconds: float,
    args: argparse.Namespace,
) -> None:
    print()
    print(f"wrk: {args.connections} connection(s), {args.seconds:g} s per kind, response cache off")
    head = (
        f"{'kind':<36} {'URLs':>5} {'req/s':>9} {'p50 ms':>9} {'p90 ms':>9} "
        f"{'p99 ms':>9} {'bytes':>8} {'non-2xx':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        bad = r.non_2xx + r.socket_errors
        print(
            f"{r.kind:<36} {r.urls:>5} {r.rps:>9.1f} {r.p50_ms:>9.2f} {r.p90_ms:>9.2f} "
            f"{r.p99_ms:>9.2f} {r.mean_bytes:>8} {bad:>8}"
        )
    for r in results:
        if r.restarted:
            print(f"  {r.kind}: measured again after the gateway was restarted")
        if r.sample_statuses:
            print(f"  {r.kind}: sample statuses {r.sample_statuses}; e.g. {r.sample_error}")
    print()
    print(f"mirror on disk (file + WAL): {disk / 2**20:,.1f} MiB")
    print("rows: " + ", ".join(f"{t} {c:,}" for t, c in counts.items()))
    mib = 2**20
    print(
        f"server: ready in {start_seconds:.1f} s; RSS at start {start_memory['VmRSS'] / mib:.0f} "
        f"MiB, at the end {end_memory['VmRSS'] / mib:.0f} MiB (anonymous "
        f"{end_memory.get('RssAnon', 0) / mib:.0f} MiB, file-backed: SQLite's mmap "
        f"{end_memory.get('RssFile', 0) / mib:.0f} MiB), peak (VmHWM) "
        f"{end_memory['peak'] / mib:.0f} MiB"
    )
    if end_memory["restarts"]:
        print(f"the gateway died and was restarted {end_memory['restarts']} time(s); see above")
    print("not measured: people and users lists (they need a token, checked upstream)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
