"""Test support: a replay upstream, servers in threads or processes, HTTP.

The replay upstream serves the recorded crawl (and the recorded anonymous
responses of non-API pages) over real HTTP on 127.0.0.1, with its own
origin in place of the recorded one.  Unknown paths get the recorded
instance's 404 page.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from aiohttp import web

from gateway.upstream.identity import PROBE
from sync.recorded import Recording, read_records

if TYPE_CHECKING:
    from tests.fake import FakePatchwork

FIXTURES = Path(__file__).parent / "fixtures"
CRAWL = FIXTURES / "crawl.jsonl.xz"
CONFORMANCE = FIXTURES / "conformance.jsonl.xz"
#: Another instance: other data, its own states (see fixtures/README.md).
OTHER_CRAWL = FIXTURES / "other-crawl.jsonl.xz"
OTHER_CASES = FIXTURES / "other-cases.jsonl.xz"


def copy_mirror(src: Path, dst: Path) -> Path:
    """A private copy of a mirror file, consistent even while it is written."""
    source, target = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return dst


def as_written_by_schema(path: Path, version: int, *undo: str) -> None:
    """Make the mirror at ``path`` what schema ``version`` wrote: ``undo``
    (SQL) takes back the later steps, then the version and a layout of its
    own are stamped, as such a file has them; opening it migrates it."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in undo:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
        layout = f"v{version}-layout"
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema.layout'", (layout,))
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


def request(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 30.0,
) -> Reply:
    """One HTTP request, no redirects followed."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        target = parts.path + ("?" + parts.query if parts.query else "")
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


class ThreadedServer:
    """Runs an aiohttp application on 127.0.0.1 in a background thread."""

    def __init__(self, app: web.Application, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())  # type: ignore[union-attr]
        self._loop.close()

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)


@contextlib.contextmanager
def every(seconds: float, action: Callable[[], None]) -> Iterator[None]:
    """Run ``action`` every ``seconds`` in a thread while the block runs."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            action()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def recorded_404(records_path: Path = CONFORMANCE) -> tuple[str, str]:
    for rec in read_records(records_path):
        body = rec.get("body")
        path = rec["path"].split("?")[0]
        if rec["status"] == 404 and isinstance(body, str) and f"<code>{path}</code>" in body:
            before, _, after = body.partition(path)
            return before, after
    raise LookupError("no recorded 404 page")


def tokens() -> dict[str, str]:
    """user name -> API token of the recorded instance."""
    pairs = (line.split() for line in (FIXTURES / "tokens.txt").read_text().splitlines())
    return {name: token for name, token in pairs}


def with_recorded_identities(fake: FakePatchwork) -> FakePatchwork:
    """``fake`` knowing the recorded users' tokens, and answering unknown
    paths with the recorded 404 page, as the recorded instance does."""
    users = {fake.render("users", i)["username"]: i for i in fake.ids("users")}
    fake.tokens = {token: users[name] for name, token in tokens().items()}
    fake.not_found_page = recorded_404()
    return fake


def auth_header(auth: str | None) -> dict[str, str]:
    """The Authorization header a recorded case's identity was sent with."""
    if auth is None:
        return {}
    if auth == "badtoken":
        return {"Authorization": "Token 0123456789abcdef0123456789abcdef01234567"}
    if auth.startswith(("basic:", "basicbad:")):
        kind, user = auth.split(":", 1)
        password = f"pw-{user}" if kind == "basic" else "wrong-password"
        raw = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}
    return {"Authorization": f"Token {tokens()[auth]}"}


def identify(header: str | None, known: dict[str, str]) -> str | None:
    """The recorded identity an Authorization header stands for."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme == "Token":
        by_token = {token: name for name, token in known.items()}
        return by_token.get(value.strip(), "badtoken")
    if scheme == "Basic":
        user, _, password = base64.b64decode(value).decode().partition(":")
        ok = user in known and password == f"pw-{user}"
        return f"basic:{user}" if ok else f"basicbad:{user}"
    return "badtoken"


def session_of(name: str) -> str:
    """The Django session cookie value a recorded user is logged in with (in
    the replay upstream)."""
    return f"session-of-{name}"


def identify_request(request: web.BaseRequest, known: dict[str, str]) -> str | None:
    """The recorded identity a request stands for, in DRF's order as
    Patchwork configures it: a valid session first, then the Authorization
    headers (several joined, as WSGI servers join them)."""
    by_session = {session_of(name): name for name in known}
    session = by_session.get(request.cookies.get("sessionid") or "")
    if session is not None:
        return session
    if "Authorization" in request.headers:
        return identify(",".join(request.headers.getall("Authorization")), known)
    return None


def replay_app(
    recording: Recording, not_found: tuple[str, str], counter: list[int] | None = None
) -> web.Application:
    """An upstream answering from ``recording`` for each caller's identity
    (a token, Basic credentials, or a session cookie: :func:`session_of`)."""
    known = tokens()

    async def handle(request: web.Request) -> web.Response:
        if counter is not None:
            counter[0] += 1
        auth = identify_request(request, known)
        path = request.rel_url.raw_path_qs
        if path == PROBE:
            # The gateway's credentials check: answered as Patchwork does,
            # for every identity (the recordings hold it for some only).
            json = {"Content-Type": "application/json"}
            if auth is None:  # (no credentials it reads: a made-up session)
                body = b'{"detail":"Authentication credentials were not provided."}'
                return web.Response(status=403, body=body, headers=json)
            if auth == "badtoken":
                return web.Response(status=403, body=b'{"detail":"Invalid token."}', headers=json)
            if auth.startswith("basicbad:"):
                body = b'{"detail":"Invalid username/password."}'
                return web.Response(status=403, body=body, headers=json)
            return web.Response(body=b"[]", headers=json)
        found = recording.lookup(path, request.method, auth)
        if found is None and request.method == "HEAD":
            found = recording.lookup(path, "GET", auth)
        if found is None and auth is None and request.path.startswith(("/project/", "/series/")):
            # Patch, cover and series downloads are public: the crawl's do.
            found = recording.lookup(path, "GET", "cibot")
        if found is None:
            page = not_found[0] + quote(request.path) + not_found[1]
            return web.Response(status=404, text=page, content_type="text/html")
        resp = web.Response(status=found.status, body=found.body)
        for key, value in found.headers.items():
            resp.headers[key] = value
        return resp

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def replay_recording(origin: str, crawl: Path = CRAWL, cases: Path = CONFORMANCE) -> Recording:
    """Every recorded answer: the crawl (as cibot) and the conformance cases."""
    records = list(read_records(cases))
    records.extend(read_records(crawl))
    return Recording(iter(records), origin, identities=True)


@contextlib.contextmanager
def replay_upstream(
    counter: list[int] | None = None, crawl: Path = CRAWL, cases: Path = CONFORMANCE
) -> Iterator[ThreadedServer]:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    app = replay_app(replay_recording(origin, crawl, cases), recorded_404(cases), counter)
    with ThreadedServer(app, port) as server:
        yield server


def write_config(
    path: Path,
    upstream: str,
    storage: Path,
    port: int,
    sync: str = "",
    server: str = "",
    **extra: str,
) -> Path:
    """A config file; ``sync`` and ``server``: more of those tables."""
    lines = [
        "[upstream]",
        f'url = "{upstream}"',
        f'token = "{extra.get("token", "")}"',
        "[storage]",
        f'path = "{storage}"',
        "[server]",
        'host = "127.0.0.1"',
        f"port = {port}",
        "refresh_interval = 0.2",
        server,
        "[sync]",
        sync,
        "[logging]",
        f'level = "{extra.get("level", "warning")}"',
        f'format = "{extra.get("log_format", "text")}"',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(
    *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


class GatewayProcess:
    """``patchwork-gateway serve`` (or ``run``) in a subprocess, stopped on exit."""

    def __init__(
        self,
        config: Path,
        port: int,
        env: dict[str, str] | None = None,
        command: str = "serve",
    ) -> None:
        self.config = config
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = env
        self.command = command
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> GatewayProcess:
        # Logs go to a file: a pipe nobody reads would fill up and block it.
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", self.command, "--config", str(self.config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(self.env or {})},
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.stderr()}")
            try:
                request("GET", self.url + "/api/", timeout=2)
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("gateway did not start")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def stderr(self) -> str:
        """What the gateway has logged so far."""
        self.log.seek(0)
        return self.log.read()


@contextlib.contextmanager
def gateway_on_fake(fake: FakePatchwork, tmp: Path) -> Iterator[tuple[str, GatewayProcess]]:
    """``fake`` served over HTTP, a mirror in ``tmp`` synced from it as the
    crawl's identity (``sync --once``), and a gateway serving that mirror;
    yields the fake's origin and the gateway."""
    with ThreadedServer(fake.app()) as upstream:
        port = free_port()
        config = write_config(
            tmp / "c.toml", upstream.url, tmp / "m.sqlite3", port, token=tokens()["cibot"]
        )
        result = run_cli("sync", "--config", str(config), "--once")
        assert result.returncode == 0, result.stderr
        with GatewayProcess(config, port) as gateway:
            yield upstream.url, gateway
