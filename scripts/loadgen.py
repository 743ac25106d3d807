"""Shared by the benchmarks: servers in their own processes, and wrk.

Load comes from ``wrk`` (Debian's package), a native load generator, never
from Python competing for the same cores.  A generated Lua script walks a
list of request paths (shuffled, so no two connections follow each other)
with optional request headers.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_wrk() -> str:
    found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is not installed: apt-get install wrk (Debian/Ubuntu)")
    return found


# -- servers -------------------------------------------------------------------

#: A bare aiohttp server (uvloop, like the gateway) answering every path
#: with the bytes of a file, or an empty 304 to a request with
#: ``If-None-Match`` (or under /empty/): the ceiling.
BARE = textwrap.dedent(
    """
    import sys
    import uvloop
    from aiohttp import web
    body = open(sys.argv[2], "rb").read()
    async def handle(request):
        if "If-None-Match" in request.headers or request.path.startswith("/empty/"):
            return web.Response(status=304)
        return web.Response(body=body, content_type="application/json")
    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None,
                access_log=None, loop=uvloop.new_event_loop())
    """
)

#: Stands in for upstream's identity check (gateway.upstream.identity): every token
#: is accepted, so identified reads come from the mirror.
ACCEPTING_UPSTREAM = textwrap.dedent(
    """
    import sys
    from aiohttp import web
    async def handle(request):
        if "Authorization" in request.headers:
            return web.json_response([])
        return web.json_response({"detail": "Authentication credentials were not provided."},
                                 status=403)
    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)


class Server:
    """A process listening on 127.0.0.1:``port``, stopped on exit."""

    def __init__(self, args: list[str], port: int, cwd: Path = ROOT) -> None:
        self.args = args
        self.port = port
        self.cwd = cwd
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=self.log, cwd=self.cwd
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"{self.args[:4]} exited: {self.log.read().decode()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.args} did not start")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        stop(self.proc)
        self.log.close()

    def pin(self, cpu: int) -> None:
        """Run the process (every thread, and those it starts) on ``cpu``
        alone: the load generator on another core then never takes its
        turn, and a comparison of two servers is not one of schedulings."""
        assert self.proc is not None
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            os.sched_setaffinity(int(task.name), {cpu})

    def peak_rss(self) -> int:
        """Peak resident memory of the process and its children, in bytes."""
        assert self.proc is not None
        total = 0
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"VmHWM:\s+(\d+) kB", status)
            total += int(match.group(1)) * 1024 if match else 0
        return total


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server as Ctrl-C does (its graceful shutdown), else kill it."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def bare_server(body: Path) -> Server:
    port = free_port()
    return Server([sys.executable, "-c", BARE, str(port), str(body)], port)


def accepting_upstream() -> Server:
    port = free_port()
    return Server([sys.executable, "-c", ACCEPTING_UPSTREAM, str(port)], port)


def gateway(
    directory: Path,
    mirror: Path,
    *,
    name: str,
    cache_bytes: int = 268435456,
    workers: int = 1,
    upstream: str = "http://127.0.0.1:9",
) -> Server:
    """``patchwork-gateway serve`` on ``mirror`` (upstream only checks identities)."""
    port = free_port()
    config = directory / f"{name}.toml"
    config.write_text(
        f'[upstream]\nurl = "{upstream}"\n[storage]\npath = "{mirror}"\n'
        f'[server]\nhost = "127.0.0.1"\nport = {port}\ncache_bytes = {cache_bytes}\n'
        f'workers = {workers}\n[logging]\nlevel = "warning"\n'
    )
    return Server([sys.executable, "-m", "cli.main", "serve", "--config", str(config)], port)


# -- wrk -----------------------------------------------------------------------


@dataclass
class Result:
    rate: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(f"latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def lua(paths: list[str], headers: dict[str, str] | None = None, seed: int = 1) -> str:
    """A wrk script requesting ``paths`` in a shuffled cycle per connection."""
    shuffled = list(paths)
    random.Random(seed).shuffle(shuffled)
    lines = ",\n".join(json.dumps(p) for p in shuffled)
    header_lines = "".join(
        f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in (headers or {}).items()
    )
    return (
        f"local paths = {{\n{lines}\n}}\n{header_lines}"
        "local i = 0\n"
        "function setup(thread) thread:set('offset', math.random(#paths)) end\n"
        "function init(args) i = (offset or 0) end\n"
        "function request()\n"
        "  i = i % #paths + 1\n"
        "  return wrk.format(nil, paths[i])\n"
        "end\n"
    )


def wrk(
    base: str,
    paths: list[str],
    *,
    seconds: float,
    connections: int,
    headers: dict[str, str] | None = None,
    expect: int = 200,
    cpu: int | None = None,
) -> Result:
    """Drive ``paths`` at ``base`` for ``seconds``; one wrk thread (on
    ``cpu`` alone, if given: see :meth:`Server.pin`)."""
    pinned = None if cpu is None else lambda: os.sched_setaffinity(0, {cpu})
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(lua(paths, headers))
        script.flush()
        done = subprocess.run(
            [
                require_wrk(),
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                script.name,
                base,
            ],
            capture_output=True,
            text=True,
            check=False,
            preexec_fn=pinned,
        )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr or done.stdout}")
    out = done.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    # (Anchored: a thread's "+/- Stdev" of 87.50% ends in "50%" too.)
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx and expect < 300:
        errors += int(non2xx.group(1))
    if expect == 304 and not non2xx:
        errors += requests  # wrk counts 304 as 3xx: none seen means none came
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    return Result(rate, p50, p99, requests, errors)
