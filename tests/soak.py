"""Soak and crash loops: the machinery behind ``tests/test_soak.py`` (a short
run of each) and ``scripts/soak.py`` (the long runs, printing figures).

Everything runs on loopback: the stateful fake Patchwork, changing all
the while, and ``patchwork-gateway run`` in front of it.

* :func:`soak`: many concurrent clients send a realistic mix (cached and
  uncached reads, deep pages, forwarded reads and writes with a token,
  hostile requests) while the sync applies changes; it counts statuses,
  the gateway's own 5xx, ``database is locked`` in its log, latency
  percentiles and the server's memory over time.
* :func:`crash_loop`: the server or the sync worker is killed with
  SIGKILL at random moments, many times, while clients read and upstream
  changes; any 5xx while the server is up is counted; at the end the
  mirror must equal upstream and the gateway serve no stale answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.fake import FakePatchwork
from tests.mirroring import TOKEN, fake_upstream, serve
from tests.support import GatewayProcess, every, free_port, write_config

HOSTILE = [
    ("GET", "/api/1.4/projects/?q=" + "+".join(["abcdefghijklmnopqrstuvwxyz012345"] * 31)),
    ("GET", "/api/1.4/patches/?q=" + "x" * 2000),
    ("GET", "/api/1.4/patches/?" + "&".join(f"state={i}" for i in range(80))),
    ("GET", "/api/1.4/patches/?per_page=-1&page=99999999999999999999"),
    ("GET", "/api/1.4/patches/?since=2024-13-45T99:99&order=-id,,name"),
    ("GET", "/api/1.4/patches/%00/"),
    ("GET", "/api/1.4/patches/?z=" + "y" * 5000),
    ("TRACE", "/api/1.4/patches/"),
    ("GET", "/api/1.4/people/"),
    ("GET", "/" + "a/" * 300),
]


@dataclass
class Report:
    seconds: float = 0.0
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    #: 5xx the gateway answered itself (not passed on from upstream).
    own_5xx: int = 0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    rss_mb: list[float] = field(default_factory=list)
    locked: int = 0
    changes: int = 0
    kills: int = 0
    converged: float = 0.0
    stale: int = 0
    errors: list[str] = field(default_factory=list)

    def percentiles(self, kind: str) -> tuple[float, float, float]:
        values = sorted(self.latencies.get(kind) or [0.0])
        q = statistics.quantiles(values, n=100) if len(values) > 1 else values * 99
        return values[len(values) // 2] * 1000, q[94] * 1000, q[98] * 1000


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def churning(fake: FakePatchwork, seconds: float, report: Report) -> Any:
    """Upstream changes all along: states (events), archiving (none), series."""
    rng = random.Random(11)

    def change() -> None:
        patches = fake.ids("patches")
        kind = rng.random()
        if kind < 0.6:
            fake.set_state(rng.choice(patches), rng.choice(("new", "accepted", "rejected")))
        elif kind < 0.8:
            fake.set_archived(rng.choice(patches), rng.random() < 0.5)
        elif kind < 0.95:
            fake.add_check(rng.choice(patches), 4, "success", f"ci-{rng.randrange(99)}")
        else:
            fake.new_series(rng.choice((1, 2)), n_patches=rng.randint(1, 3))
        report.changes += 1

    return every(seconds, change)


def gateway_config(tmp: Path, upstream: str, port: int) -> Path:
    return write_config(
        tmp / "config.toml",
        upstream,
        tmp / "mirror.sqlite3",
        port,
        "poll_interval = 0.5\nsweep_budget = 600\nsweep_interval = 10\nhot_interval = 5",
        token=TOKEN,
        level="info",
    )


def wait_synced(url: str, timeout: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError, ValueError),
            urllib.request.urlopen(url + "/_gateway/status", timeout=5) as resp,
        ):
            if json.loads(resp.read())["initial_sync"] == "complete":
                return
        time.sleep(0.2)
    raise TimeoutError("the initial sync did not complete")


class Client:
    """One simulated client; ``kind`` picks what it sends next."""

    def __init__(self, base: str, rng: random.Random, patches: int) -> None:
        self.base, self.rng, self.patches = base, rng, patches

    def next(self) -> tuple[str, str, str, dict[str, str], bytes | None]:
        roll = self.rng.random()
        if roll < 0.45:
            path = self.rng.choice(
                ["/api/1.4/patches/?per_page=30", "/api/1.4/events/", "/api/1.2/projects/"]
            )
            return "cached", "GET", path, {}, None
        if roll < 0.75:
            page = self.rng.randint(1, max(1, self.patches // 30))
            order = self.rng.choice(["", "&order=-date", "&order=name", "&archived=false"])
            return "uncached", "GET", f"/api/1.4/patches/?per_page=30&page={page}{order}", {}, None
        if roll < 0.80:
            patch = self.rng.randint(1, self.patches)
            return "detail", "GET", f"/api/1.4/patches/{patch}/", {}, None
        auth = {"Authorization": f"Token {TOKEN}"}
        if roll < 0.85:
            return "forwarded read", "GET", "/api/1.4/users/?per_page=5", auth, None
        if roll < 0.88:
            patch = self.rng.randint(1, self.patches)
            body = json.dumps({"state": "under-review"}).encode()
            headers = {**auth, "Content-Type": "application/json"}
            return "forwarded write", "PATCH", f"/api/1.4/patches/{patch}/", headers, body
        method, path = self.rng.choice(HOSTILE)
        return "hostile", method, path, {}, None


async def _load(base: str, seconds: float, concurrency: int, report: Report, patches: int) -> None:
    stop = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def one(n: int) -> None:
            client = Client(base, random.Random(n), patches)
            while time.monotonic() < stop:
                kind, method, path, headers, body = client.next()
                started = time.monotonic()
                try:
                    async with session.request(
                        method, base + path, headers=headers, data=body, allow_redirects=False
                    ) as resp:
                        await resp.read()
                        status, source = resp.status, resp.headers.get("X-Patchwork-Gateway")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    report.errors.append(f"{kind} {method} {path[:80]}: {type(exc).__name__}")
                    continue
                report.latencies.setdefault(kind, []).append(time.monotonic() - started)
                report.requests += 1
                report.statuses[status] += 1
                if status >= 500 and source != "upstream":
                    report.own_5xx += 1
                    report.errors.append(f"{kind} {method} {path[:80]}: {status}")

        await asyncio.gather(*(one(n) for n in range(concurrency)))


def soak(tmp: Path, seconds: float, concurrency: int, change_every: float = 0.2) -> Report:
    """A mixed load on `run` while upstream changes; see the module's docstring."""
    report = Report()
    fake = fake_upstream()
    with serve(fake) as upstream:
        port = free_port()
        config = gateway_config(tmp, upstream, port)
        with GatewayProcess(config, port, command="run") as gateway:
            wait_synced(gateway.url)
            assert gateway.proc is not None
            pid = gateway.proc.pid

            def sample() -> None:
                with contextlib.suppress(OSError):
                    report.rss_mb.append(rss_mb(pid))

            started = time.monotonic()
            with every(1.0, sample), churning(fake, change_every, report):
                asyncio.run(_load(gateway.url, seconds, concurrency, report, 767))
            report.seconds = time.monotonic() - started
            report.locked = gateway.stderr().count("database is locked")
    return report


def crash_loop(tmp: Path, cycles: int, seed: int = 5) -> Report:
    """Kill the server or its sync worker at random moments, ``cycles`` times,
    then let a last gateway run until the mirror equals upstream.

    ``report.converged`` is how long that took; ``report.stale`` counts
    answers that did not show upstream's latest state once it had.
    """
    rng = random.Random(seed)
    report = Report()
    fake = fake_upstream()
    fake.delay = 0.002  # a crawl long enough to be killed in
    port = free_port()
    with serve(fake) as upstream:
        config = gateway_config(tmp, upstream, port)
        with churning(fake, 0.3, report):
            for _ in range(cycles):
                with GatewayProcess(config, port, command="run") as gateway:
                    assert gateway.proc is not None
                    up_for = rng.uniform(0.5, 3.0)
                    asyncio.run(_load(gateway.url, up_for, 4, report, len(fake.ids("patches"))))
                    victim = gateway.proc.pid
                    if rng.random() < 0.3:  # the sync worker alone, if it is running
                        children = _children(victim)
                        victim = children[0] if children else victim
                    os.kill(victim, signal.SIGKILL)
                    report.kills += 1
                    if victim == gateway.proc.pid:
                        gateway.proc.wait()
        fake.delay = 0
        started = time.monotonic()
        with GatewayProcess(config, port, command="run") as gateway:
            asyncio.run(_converge(tmp / "mirror.sqlite3", fake, gateway.url, report))
        report.converged = time.monotonic() - started
    return report


async def _converge(mirror: Path, fake: FakePatchwork, url: str, report: Report) -> None:
    from tests.mirroring import until_mirror_equals

    await until_mirror_equals(mirror, fake, 120)
    await asyncio.sleep(0.5)  # the server's refresh_interval, to see the last write
    async with aiohttp.ClientSession() as session:
        for patch in fake.ids("patches")[-50:]:
            async with session.get(f"{url}/api/1.4/patches/{patch}/") as resp:
                shown = await resp.json()
            want = fake.render("patches", patch)
            if (shown["state"], shown["archived"]) != (want["state"], want["archived"]):
                report.stale += 1


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(c) for c in children.read().split()]
    except OSError:
        return []


def summary(report: Report) -> dict[str, Any]:
    """The figures, for printing."""
    kinds = {
        kind: "p50 {:.1f} ms, p95 {:.1f} ms, p99 {:.1f} ms".format(*report.percentiles(kind))
        for kind in sorted(report.latencies)
    }
    return {
        "seconds": round(report.seconds, 1),
        "requests": report.requests,
        "statuses": dict(sorted(report.statuses.items())),
        "gateway's own 5xx": report.own_5xx,
        "'database is locked' in its log": report.locked,
        "changes upstream meanwhile": report.changes,
        "server memory (RSS, MB) first/peak/last": (
            [round(report.rss_mb[0]), round(max(report.rss_mb)), round(report.rss_mb[-1])]
            if report.rss_mb
            else None
        ),
        "latency by kind": kinds,
        "kills": report.kills,
        "seconds to converge after the last kill": round(report.converged, 1),
        "stale answers after converging": report.stale,
        "client errors": report.errors[:5],
    }
