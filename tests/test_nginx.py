"""nginx in front of the gateway, configured by deploy/nginx/patchwork-gateway.conf.

A real nginx runs the shipped file (its listen address, upstream port and
cache path substituted, nothing else) in front of a real gateway, and the
tests check what its cache does with the gateway's caching headers: public
answers are stored and served again (MISS, then HIT, the same bytes),
revalidated with the ETag when they expire, and answered with 304s; answers
to callers with credentials are never stored nor served from the cache;
writes are never cached; URLs point at nginx's origin.

Skipped, saying so, without nginx (CI installs Debian's package).
"""

from __future__ import annotations

import contextlib
import ctypes
import gzip
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import (
    GatewayProcess,
    Reply,
    auth_header,
    copy_mirror,
    free_port,
    request,
    write_config,
)

SITE = Path(__file__).parent.parent / "deploy" / "nginx" / "patchwork-gateway.conf"
#: The gateway's cache_max_age here: short, so that an expiry can be waited for.
MAX_AGE = 3
#: A token upstream (the replay) accepts: cibot's.
CIBOT = auth_header("cibot")


def nginx_binary() -> str | None:
    """nginx lives in /usr/sbin, which a user's PATH may not hold."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/local/sbin:/usr/sbin:/sbin")


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        nginx_binary() is None, reason="nginx is not installed (Debian: apt-get install nginx)"
    ),
]


def site_config(port: int, gateway_port: int, cache: Path) -> str:
    """The shipped configuration, with this test's addresses and paths."""
    text = SITE.read_text()
    substitutions = {
        "listen 80;": f"listen 127.0.0.1:{port};",
        "listen [::]:80;": "",  # (IPv6 may be missing in a container)
        "server 127.0.0.1:8080 ": f"server 127.0.0.1:{gateway_port} ",
        "/var/cache/nginx/patchwork-gateway": str(cache),
    }
    for old, new in substitutions.items():
        assert text.count(old) == 1, f"{SITE} should hold {old!r} once"
        text = text.replace(old, new)
    return text


def main_config(folder: Path, site: Path) -> str:
    """nginx.conf around the site: every path it writes in ``folder``."""
    # Started as root, nginx runs its workers as `nobody`, who cannot enter
    # pytest's private temporary folders.
    user = "user root;" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}
worker_processes 1;
error_log {folder / "error.log"} warn;
events {{
    worker_connections 256;
}}
http {{
    # What nginx asked the gateway, and what it answered (a revalidation
    # runs in a subrequest).
    log_format upstream "$request_method $request_uri $status $upstream_status"
                        " $upstream_cache_status";
    access_log {folder / "access.log"} upstream;
    log_subrequest on;
{temp}
    include {site};
}}
"""


#: Looked up here: the child, forked from a threaded process, only calls it.
_prctl: Callable[[int, int], int] | None
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def _die_with_parent() -> None:
    """In the child: be sent SIGTERM when the test process dies (Linux)."""
    if _prctl is not None:
        _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def running_nginx(binary: str, folder: Path, port: int, gateway_port: int) -> Iterator[str]:
    """nginx as a child process (no daemon), stopped on the way out."""
    site = folder / "patchwork-gateway.conf"
    site.write_text(site_config(port, gateway_port, folder / "cache"))
    conf = folder / "nginx.conf"
    conf.write_text(main_config(folder, site))
    command = [
        binary,
        "-p",
        str(folder),
        "-c",
        str(conf),
        "-g",
        f"daemon off; pid {folder / 'nginx.pid'};",
    ]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, f"nginx -t refuses the configuration:\n{checked.stderr}"
    log = (folder / "nginx.out").open("w+")
    proc = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"nginx exited: {log.read()}")
            try:
                request("GET", url + "/_gateway/health/live", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@dataclass
class Front:
    url: str
    gateway: str
    folder: Path

    def get(self, path: str, headers: dict[str, str] | None = None, **kw) -> Reply:
        return request("GET", self.url + path, headers, **kw)

    def error_log(self) -> str:
        return (self.folder / "error.log").read_text()


@pytest.fixture(scope="module")
def front(deployment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    binary = nginx_binary()
    assert binary is not None
    folder = tmp_path_factory.mktemp("nginx")
    mirror = copy_mirror(deployment.storage, folder / "mirror.sqlite3")
    port = free_port()
    config = write_config(
        folder / "config.toml",
        deployment.upstream,
        mirror,
        port,
        # (ready_max_lag: ready however long ago the shared mirror was synced.)
        server=f"cache_max_age = {MAX_AGE}\nready_max_lag = 0",
    )
    with (
        GatewayProcess(config, port) as gateway,
        running_nginx(binary, folder, free_port(), port) as url,
    ):
        yield Front(url, gateway.url, folder)


def _status(reply: Reply) -> str | None:
    return reply.header("X-Cache-Status")


def test_an_anonymous_read_is_cached_and_urls_point_at_nginx(front):
    path = "/api/1.4/patches/?per_page=2&order=id"
    first = front.get(path)
    assert first.status == 200, first.body[:300]
    assert _status(first) == "MISS"
    assert first.header("Cache-Control") == f"public, max-age={MAX_AGE}"
    second = front.get(path)
    assert _status(second) == "HIT"
    assert second.body == first.body
    assert second.header("ETag") == first.header("ETag")
    assert second.header("Link") == first.header("Link")
    # The Host nginx was reached by reaches the gateway: URLs are nginx's.
    link = first.header("Link")
    assert link and f"<{front.url}/api/1.4/patches/?" in link
    data = json.loads(first.body)
    assert data and all(patch["url"].startswith(front.url + "/api/1.4/") for patch in data)
    assert front.gateway not in first.body.decode()


def test_the_cache_is_kept_per_host(front):
    path = "/api/1.4/projects/?per_page=1"
    by_ip = front.get(path)
    assert json.loads(by_ip.body)[0]["url"].startswith(front.url)
    other = front.url.replace("127.0.0.1", "localhost")
    host = other.removeprefix("http://")
    by_name = front.get(path, {"Host": host})
    assert by_name.status == 200 and _status(by_name) == "MISS"
    assert json.loads(by_name.body)[0]["url"].startswith(other + "/api/")
    assert _status(front.get(path, {"Host": host})) == "HIT"


def test_if_none_match_gets_a_304_through_nginx(front):
    path = "/api/1.4/covers/?per_page=2"
    # Asked before anything is cached: nginx asks the gateway for the whole
    # answer, stores it, and answers the condition itself.
    host = front.url.removeprefix("http://")
    etag = request("GET", front.gateway + path, {"Host": host}).header("ETag")
    assert etag
    first = front.get(path, {"If-None-Match": etag})
    assert (first.status, _status(first), first.body) == (304, "MISS", b"")
    cached = front.get(path, {"If-None-Match": etag})
    assert (cached.status, _status(cached)) == (304, "HIT")
    assert cached.header("ETag") == etag
    changed = front.get(path, {"If-None-Match": '"another"'})
    assert (changed.status, _status(changed)) == (200, "HIT")
    assert changed.header("ETag") == etag


def test_an_expired_answer_is_revalidated_with_its_etag(front):
    path = "/api/1.4/series/?per_page=2"
    first = front.get(path)
    assert _status(first) == "MISS"
    # (nginx counts whole seconds: an answer may be fresh one more.)
    time.sleep(MAX_AGE + 1.2)
    # proxy_cache_background_update: the stale answer at once, while a
    # subrequest revalidates it.
    again = front.get(path)
    assert _status(again) in ("STALE", "UPDATING", "REVALIDATED", "EXPIRED")
    assert again.body == first.body
    deadline = time.monotonic() + 5
    while _status(reply := front.get(path)) != "HIT":
        assert time.monotonic() < deadline, _status(reply)
        time.sleep(0.05)
    assert reply.body == first.body
    # The gateway was asked with the ETag, and answered a 304.
    asked = [
        line.split()
        for line in (front.folder / "access.log").read_text().splitlines()
        if line.split()[1] == path
    ]
    statuses = [words[3] for words in asked]
    assert statuses[0] == "200" and "304" in statuses, asked


def test_gzip_and_plain_answers_are_kept_apart(front):
    path = "/api/1.4/patches/?per_page=5&order=-id"
    zipped = front.get(path, {"Accept-Encoding": "gzip"})
    assert zipped.status == 200 and zipped.header("Content-Encoding") == "gzip"
    assert "Accept-Encoding" in (zipped.header("Vary") or "")
    plain = front.get(path)
    assert plain.header("Content-Encoding") is None
    assert _status(plain) == "MISS"
    assert gzip.decompress(zipped.body) == plain.body
    again = front.get(path, {"Accept-Encoding": "gzip"})
    assert (_status(again), again.body) == ("HIT", zipped.body)
    assert again.header("ETag") == zipped.header("ETag") != plain.header("ETag")


def test_html_and_json_answers_are_kept_apart(front):
    path = "/api/1.4/projects/"
    page = front.get(path, {"Accept": "text/html"})
    assert page.status == 200 and page.header("Content-Type").startswith("text/html")
    data = front.get(path, {"Accept": "application/json"})
    assert data.header("Content-Type").startswith("application/json")
    assert _status(data) == "MISS"
    assert _status(front.get(path, {"Accept": "text/html"})) == "HIT"


def test_a_token_never_reads_nor_fills_the_cache(front):
    path = "/api/1.4/users/?per_page=3"
    for _ in range(2):
        identified = front.get(path, CIBOT)
        assert identified.status == 200, identified.body[:300]
        assert _status(identified) == "BYPASS"
        assert identified.header("Cache-Control") == "private, no-cache"
        assert json.loads(identified.body), "users, for cibot"
    # Not stored: an anonymous caller gets the anonymous answer (a 403).
    anonymous = front.get(path)
    assert anonymous.status == 403 and _status(anonymous) == "MISS"
    assert _status(front.get(path)) == "HIT"
    # And what is stored is not served to a caller with credentials.
    identified = front.get(path, CIBOT)
    assert (identified.status, _status(identified)) == (200, "BYPASS")


def test_a_token_still_gets_304s_from_the_gateway(front):
    path = "/api/1.4/users/?per_page=2"
    first = front.get(path, CIBOT)
    etag = first.header("ETag")
    assert first.status == 200 and etag
    again = front.get(path, {**CIBOT, "If-None-Match": etag})
    assert (again.status, _status(again)) == (304, "BYPASS")
    assert again.header("Cache-Control") == "private, no-cache"


def test_a_session_cookie_bypasses_the_cache(front):
    path = "/api/1.4/projects/?per_page=2"
    anonymous = front.get(path)
    assert anonymous.status == 200
    assert _status(front.get(path)) == "HIT"
    for cookie in ("sessionid=abc", "csrftoken=x; sessionid=abc"):
        # (Only upstream knows a session: the gateway checks it there once;
        # this one upstream does not know, so the answer is the anonymous
        # one, from the mirror, and still never kept by nginx.)
        with_session = front.get(path, {"Cookie": cookie})
        assert _status(with_session) == "BYPASS", cookie
        assert with_session.header("X-Patchwork-Gateway") == "mirror"
        assert (with_session.status, with_session.body) == (200, anonymous.body)
    again = front.get(path)
    assert (_status(again), again.body) == ("HIT", anonymous.body)
    # Other cookies change nothing for the gateway: not a bypass.
    other = front.get(path, {"Cookie": "theme=dark"})
    assert _status(other) != "BYPASS"
    assert (other.status, other.body) == (200, anonymous.body)
    assert other.header("Cache-Control") == f"public, max-age={MAX_AGE}"


def test_writes_are_never_cached(front):
    path = "/api/1.4/patches/1/"
    for headers in ({}, {}, CIBOT):
        wrote = request(
            "POST", front.url + path, {"Content-Type": "application/json", **headers}, b"{}"
        )
        # (The replay upstream has no answer for it: its 404 page.)
        assert wrote.header("X-Patchwork-Gateway") == "upstream"
        assert _status(wrote) in (None, "BYPASS"), "a write never goes through the cache"
    read = front.get(path)
    assert read.status == 200 and _status(read) == "MISS"
    assert json.loads(read.body)["id"] == 1
    assert read.header("X-Patchwork-Gateway") == "mirror"
    log = (front.folder / "access.log").read_text().splitlines()
    posts = [line.split() for line in log if line.startswith(f"POST {path} ")]
    assert len(posts) == 3 and all(words[4] == "-" for words in posts), posts


def test_health_is_never_cached(front):
    for _ in range(2):
        ready = front.get("/_gateway/health/ready")
        assert ready.status == 200, ready.body
        assert _status(ready) is None
        assert json.loads(ready.body)["status"] == "ready"


def test_metrics_pass_uncached_to_the_monitoring_network(front):
    first = front.get("/metrics")
    assert first.status == 200
    assert _status(first) is None
    assert b"patchwork_gateway_http_requests_total" in first.body
    assert b"patchwork_gateway_mirror_objects" in first.body


def test_a_long_link_header_passes(front):
    # The longest query the gateway takes (2 KB) is repeated in each link.
    pad = "x" * 1900
    path = f"/api/1.4/patches/?per_page=1&page=2&q=&ignored={pad}"
    reply = front.get(path)
    assert reply.status == 200, (reply.status, front.error_log()[-500:])
    assert len(reply.header("Link") or "") > 3800


def test_the_change_feed_passes_held_and_streamed(front):
    now = front.get("/_gateway/changes")
    assert now.status == 200 and _status(now) is None
    cursor = json.loads(now.body)["next"]
    # Held past nothing coming: the gateway answers, not nginx's time-out.
    held = front.get(f"/_gateway/changes?since={cursor}&wait=2", timeout=10)
    assert held.status == 200
    assert json.loads(held.body) == {"changes": [], "next": cursor, "more": False}
    # A stream's first events come through as they are sent, not buffered.
    url = front.url + "/_gateway/changes?since=0&resource=checks&limit=1"
    stream = urllib.request.urlopen(
        urllib.request.Request(url, headers={"Accept": "text/event-stream"}), timeout=10
    )
    assert stream.headers["Content-Type"] == "text/event-stream"
    assert stream.readline().startswith(b"id: ")
    stream.close()
