"""The real clients' read commands, through the gateway and straight at the
Patchwork it mirrors: the output must be the same.

git-pw and pwclient from PyPI run every read command they have (patches:
list with each filter and ordering, show, download; series: list, show,
download; bundles: list, show, download; checks; events; projects) at API
1.0, 1.1, 1.2 and the unversioned URL (git-pw at 1.4 too), once against
the upstream (the stateful fake Patchwork, served over HTTP) and once
against a gateway whose mirror was synced from it.  The two outputs
(stdout, stderr, exit status, the files written) must be equal once each
server's address is replaced by the same placeholder.  Commands that fail
(anonymous people look-ups, missing objects, another's private bundle)
must fail the same way.  None of these read commands is refused at any of
these versions: Patchwork 3.x routes bundles and events at every version
and git-pw checks the version for bundle writes only; what changes with
the version (fields, filters, comment events) shows in the outputs, and
they are compared all the same.

b4 looks patches up by message id (``/api/1.2/patches?msgid=``, without
the slash) to show their CI state and to set their review state: it must
find the same patches through the gateway as upstream.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from sync.recorded import read_records
from tests.fake import FakePatchwork
from tests.support import (
    FIXTURES,
    GatewayProcess,
    copy_mirror,
    free_port,
    gateway_on_fake,
    request,
    tokens,
    with_recorded_identities,
    write_config,
)

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
PROJECT = "patchwork"

# Objects of the recorded instance every command below finds.
PATCH = "7"  # accepted, in series 3, with a check
PATCH_MSGID = "1219284397.847892-patch4@ozlabs.org"
NEW_PATCH_HASH = "b24f091c64f898de333dc488822200d7b0e89fc9"  # patches 28 and 44, new
NEW_PATCH_MSGID = "1219438687.145537-patch1@xes-inc.com"
CHECKED = "409"  # three checks by stephen
CHECK = "44"
SERIES = "7"  # a cover letter and five patches
CI_SERIES = 91  # its last patch has a warning
PUBLIC_BUNDLE, PUBLIC_BUNDLE_NAME = "1", "patchwork-stephen-0"
PRIVATE_BUNDLE, PRIVATE_BUNDLE_NAME = "6", "patchwork-cibot-1"  # the token's own
#: The crawl's events are all within a minute: the last 164 (six pages,
#: comment events among them), and forty series-completed ones (two pages).
EVENTS_SINCE = "2026-11-24T01:19:40"
SERIES_EVENTS_SINCE = "2026-11-24T01:19:10"

#: git-pw takes the API version from the server URL (a bare /api is 1.0 to it).
GIT_PW_APIS = ("/api/1.0", "/api/1.1", "/api/1.2", "/api/1.4", "/api")
PWCLIENT_APIS = ("/api/1.0", "/api/1.1", "/api/1.2", "/api")
TIMEOUT = 60


@dataclass(frozen=True)
class Command:
    """One client command line; ``token``: the identity it is configured with."""

    client: str
    args: tuple[str, ...]
    token: str | None = "cibot"
    #: Whether it must fail (on both sides); else it must succeed and show
    #: something beyond its headers.
    fails: bool = False
    #: Whether it may show nothing but its headers.
    empty: bool = False

    def shows_something(self, output: Output) -> bool:
        if output.files:
            return all(text for _, text in output.files)
        headers = 1 if self.client == "git-pw" else 2  # pwclient underlines them
        return self.empty or len(output.stdout.splitlines()) > headers

    def __str__(self) -> str:
        who = "" if self.token == "cibot" else f" [{self.token or 'anonymous'}]"
        return f"{self.client} {' '.join(self.args)}{who}"


def git_pw(*args: str, token: str | None = "cibot", fails: bool = False) -> Command:
    return Command("git-pw", args, token, fails)


def pwclient(*args: str, fails: bool = False, empty: bool = False) -> Command:
    return Command("pwclient", args, fails=fails, empty=empty)


GIT_PW = [
    # patch list: the defaults (new and under-review, newest first), each filter
    git_pw("patch", "list"),
    git_pw("patch", "list", "--state", "accepted", "--state", "rejected", "--sort", "id"),
    git_pw("patch", "list", "--submitter", "Damien Lespiau", "--sort", "id"),
    git_pw("patch", "list", "--submitter", "damien.lespiau@intel.com", "--sort", "id"),
    git_pw("patch", "list", "--submitter", "Damien Lespiau", token=None, fails=True),
    git_pw("patch", "list", "--delegate", "stephen"),
    git_pw(
        "patch",
        "list",
        "--delegate",
        "cibot@example.com",
        "--state",
        "under-review",
        "--state",
        "awaiting-upstream",
    ),
    git_pw("patch", "list", "--hash", NEW_PATCH_HASH),  # ignored below 1.2
    git_pw("patch", "list", "--archived", "--state", "rejected", "--state", "rfc"),
    git_pw("patch", "list", "--since", "2015-01-01", "--before", "2015-10-01", "--sort", "date"),
    git_pw("patch", "list", "--limit", "5", "--page", "2"),
    *(git_pw("patch", "list", "--limit", "8", "--sort", s) for s in ("id", "-id", "name", "-name")),
    git_pw("patch", "list", "--limit", "8", "--sort", "date"),
    git_pw("patch", "list", "views xmlrpc", "--sort", "id"),
    git_pw("patch", "list", "--state", "new", "--limit", "3", token=None),
    git_pw("patch", "show", PATCH),
    git_pw("patch", "show", "999999", fails=True),
    git_pw("patch", "download", PATCH, "out/"),
    git_pw("patch", "download", PATCH, "mine.patch"),
    git_pw("patch", "download", PATCH, "-"),
    git_pw("patch", "download", "--diff", PATCH, "out/"),
    git_pw("patch", "download", "--diff", PATCH, "mine.diff"),
    git_pw("patch", "download", "--diff", PATCH, "-"),
    # series
    git_pw("series", "list"),
    git_pw("series", "list", "--submitter", "Stephen Finucane", "--sort", "id"),
    git_pw("series", "list", "--submitter", "stephen.finucane@intel.com", "--sort", "-id"),
    git_pw(
        "series",
        "list",
        "--since",
        "2010-01-01",
        "--before",
        "2015-01-01",
        "--limit",
        "5",
        "--page",
        "2",
        "--sort",
        "id",
    ),
    git_pw("series", "list", "xmlrpc", "--sort", "name"),
    git_pw("series", "show", SERIES),
    git_pw("series", "download", SERIES, "out/"),
    git_pw("series", "download", SERIES, "-"),
    git_pw("series", "download", "--separate", SERIES, "out/"),
    # bundles: public ones and the caller's own
    git_pw("bundle", "list"),
    git_pw("bundle", "list", token=None),
    git_pw("bundle", "list", "--owner", "stephen", "--sort", "-name"),
    git_pw("bundle", "list", "--owner", "andrew@example.com"),
    git_pw("bundle", "list", "--sort", "-id", "--limit", "3", "--page", "2"),
    git_pw("bundle", "show", PUBLIC_BUNDLE),
    git_pw("bundle", "show", PRIVATE_BUNDLE_NAME),
    git_pw("bundle", "show", PRIVATE_BUNDLE, token=None, fails=True),
    git_pw("bundle", "download", PUBLIC_BUNDLE, "out/"),
    git_pw("bundle", "download", PUBLIC_BUNDLE_NAME, "-"),
    git_pw("bundle", "download", PRIVATE_BUNDLE, "-"),  # with the owner's token
]

# Left out, broken in pwclient's REST backend: ``-h`` (a hash look-up takes
# ``len()`` of a generator), ``-n``/``-N``, ``states``, and the ``list``
# name argument (silently dropped).
PWCLIENT = [
    pwclient("projects"),
    pwclient("list"),
    pwclient("list", "-s", "Under Review"),
    pwclient("list", "-s", "accepted", "-a", "no"),
    pwclient("list", "-s", "rejected", "-a", "yes"),
    pwclient("list", "-w", "damien.lespiau@intel.com"),
    pwclient("list", "-d", "stephen"),
    pwclient("list", "-S", SERIES),
    pwclient("list", "-H", NEW_PATCH_HASH),  # ignored below 1.2
    pwclient("list", "-m", NEW_PATCH_MSGID),  # ignored below 1.2
    pwclient("list", "-m", f"<{NEW_PATCH_MSGID}>", empty=True),  # wrapped again: nothing
    pwclient("list", "-s", "new", "-f", "%{id} %{state} %{msgid} %{hash}"),
    pwclient("info", PATCH),
    pwclient("info", "999999", fails=True),
    pwclient("get", PATCH),
    pwclient("view", PATCH, "8"),
    pwclient("check-list", PATCH),
    pwclient("check-list", "-u", "stephen", CHECKED),
    pwclient("check-get", CHECKED),
    pwclient("check-get", "-f", "%{context} %{state} %{user}", CHECKED),
    pwclient("check-info", CHECKED, CHECK),
    pwclient("event-list", "-c", "series-completed", "--since", SERIES_EVENTS_SINCE),
    pwclient("event-list", "--since", EVENTS_SINCE),  # comment events from 1.3
    pwclient("event-list", "-p", PROJECT, "-c", "patch-state-changed"),
]


def case_id(case: tuple[Command, str]) -> str:
    command, api = case
    return f"{command} @{api.removeprefix('/api').lstrip('/') or 'latest'}"


CASES = [(c, api) for c in GIT_PW for api in GIT_PW_APIS] + [
    (c, api) for c in PWCLIENT for api in PWCLIENT_APIS
]


@dataclass
class Servers:
    fake: FakePatchwork
    upstream: str
    gateway: str
    tmp: Path
    #: (command, api) -> (upstream's output, the gateway's)
    outputs: dict[tuple[Command, str], tuple[Output, Output]] = field(default_factory=dict)
    bases: dict[tuple[str, str, str, str | None], Path] = field(default_factory=dict)

    def server(self, side: str) -> str:
        return self.upstream if side == "upstream" else self.gateway

    def base(self, side: str, command: Command, api: str) -> Path:
        """The directory configured for a client, an API and an identity."""
        key = (side, command.client, api, command.token)
        if key not in self.bases:
            where = self.tmp / f"{side}-{command.client}-{len(self.bases)}"
            server = self.server(side)
            self.bases[key] = setup_client(where, command.client, server, api, command.token)
        return self.bases[key]


@dataclass(frozen=True)
class Output:
    status: int
    stdout: str
    stderr: str
    #: Files the command wrote: relative path -> content.
    files: tuple[tuple[str, str], ...]


def environment(home: Path, **more: str) -> dict[str, str]:
    """A clean environment: no user configuration, pagers, proxies; temporary
    files (git-pw's downloads) in ``home``, which pytest removes."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_PAGER": "cat",
        "PAGER": "cat",
        **more,
    }


def setup_client(base: Path, client: str, server: str, api: str, token: str | None) -> Path:
    """A working directory configured for ``client`` as a tester would."""
    base.mkdir(parents=True)
    if client == "git-pw":
        env = environment(base)
        subprocess.run(["git", "init", "-q"], cwd=base, env=env, check=True, timeout=TIMEOUT)
        settings = [("pw.server", server + api), ("pw.project", PROJECT), ("pw.format", "csv")]
        if token:
            settings.append(("pw.token", tokens()[token]))
        for key, value in settings:
            subprocess.run(
                ["git", "config", key, value], cwd=base, env=env, check=True, timeout=TIMEOUT
            )
    else:
        (base / "pwclientrc").write_text(
            f"[options]\ndefault = {PROJECT}\n"
            f"[{PROJECT}]\nbackend = rest\nurl = {server}{api}\n"
            f"token = {tokens()['cibot']}\n"
        )
    return base


#: Runs client commands as their console scripts do, each in a process of
#: its own forked from one that imported the clients once (a Python start
#: per command would take most of this file's time).  Reads a JSON list of
#: jobs on stdin, runs ``argv[1]`` at a time, prints their exit statuses.
RUNNER = """
import json, os, signal, sys, time, traceback
import git_pw.shell, pwclient.shell

def child(job):
    os.chdir(job["cwd"])
    os.environ.clear()
    os.environ.update(job["env"])
    # As on a terminal, stdin is where stdout goes: ``git-pw patch download
    # --diff ID -`` writes to file descriptor 0.
    out = os.open(job["out"], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(job["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for fd, target in ((0, out), (1, out), (2, err)):
        os.dup2(target, fd)
    signal.alarm(int(sys.argv[2]))
    sys.argv = [job["client"], *job["args"]]
    try:
        if job["client"] == "git-pw":
            code = git_pw.shell.cli()
        else:
            # Read at import by the console script, from the environment.
            pwclient.shell.CONFIG_FILE = os.environ.get(
                "PWCLIENTRC", os.path.expanduser("~/.pwclientrc"))
            code = pwclient.shell.main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        traceback.print_exc()
        code = 1
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code or 0)

jobs, running, statuses = json.load(sys.stdin), {}, {}
while jobs or running:
    while jobs and len(running) < int(sys.argv[1]):
        job = jobs.pop(0)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            child(job)
        running[pid] = job["id"]
    pid, status = os.wait()
    statuses[running.pop(pid)] = os.waitstatus_to_exitcode(status)
print(json.dumps(statuses))
"""


def collect(cwd: Path, status: int, stdout: str, stderr: str, server: str) -> Output:
    """What a command printed and wrote in ``cwd``, the server's address replaced."""
    netloc = urlsplit(server).netloc
    files = sorted(
        (str(p.relative_to(cwd)), p.read_text(errors="replace"))
        for p in cwd.rglob("*")
        if p.is_file()
    )
    return Output(
        status,
        stdout.replace(netloc, "SERVER"),
        stderr.replace(netloc, "SERVER"),
        tuple((name, text.replace(netloc, "SERVER")) for name, text in files),
    )


@dataclass
class Job:
    case: tuple[Command, str]
    side: str
    cwd: Path
    server: str
    status: int = -1

    def output(self) -> Output:
        def text(suffix: str) -> str:
            return self.cwd.with_suffix(suffix).read_text(errors="replace")

        return collect(self.cwd, self.status, text(".out"), text(".err"), self.server)


def run_all(servers: Servers) -> None:
    """Every case against both servers, a few at a time."""
    jobs: list[Job] = []
    specs = []
    for number, (command, api) in enumerate(CASES):
        for side, server in (("upstream", servers.upstream), ("gateway", servers.gateway)):
            base = servers.base(side, command, api)
            cwd = base / str(number)
            (cwd / "out").mkdir(parents=True)  # for downloads into a directory
            job = Job((command, api), side, cwd, server)
            specs.append(
                {
                    "id": len(jobs),
                    "client": command.client,
                    "args": command.args,
                    "cwd": str(cwd),
                    "env": environment(base, PWCLIENTRC=str(base / "pwclientrc")),
                    "out": str(cwd.with_suffix(".out")),
                    "err": str(cwd.with_suffix(".err")),
                }
            )
            jobs.append(job)
    runner = subprocess.run(
        [sys.executable, "-c", RUNNER, "4", str(TIMEOUT)],
        input=json.dumps(specs),
        capture_output=True,
        text=True,
        cwd=servers.tmp,
        env=environment(servers.tmp),
        timeout=600,
        check=False,
    )
    assert runner.returncode == 0, runner.stderr
    for key, status in json.loads(runner.stdout).items():
        jobs[int(key)].status = status
    outputs: dict[tuple[Command, str], dict[str, Output]] = {}
    for job in jobs:
        outputs.setdefault(job.case, {})[job.side] = job.output()
    servers.outputs = {case: (got["upstream"], got["gateway"]) for case, got in outputs.items()}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """The recorded instance as a live upstream, a mirror synced from it, and
    the gateway on that mirror; every read command already run on both."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    tmp = tmp_path_factory.mktemp("client-reads")
    fake = with_recorded_identities(
        FakePatchwork.from_records(read_records(FIXTURES / "crawl.jsonl.xz"))
    )
    with gateway_on_fake(fake, tmp) as (upstream, gateway):
        servers = Servers(fake, upstream, gateway.url, tmp)
        run_all(servers)
        yield servers


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_read_commands_print_what_they_print_upstream(
    servers: Servers, case: tuple[Command, str]
) -> None:
    upstream, gateway = servers.outputs[case]
    command, _ = case
    if command.fails:
        assert upstream.status != 0, upstream
    else:
        assert upstream.status == 0, upstream.stderr
        assert command.shows_something(upstream), upstream.stdout
    assert gateway.status == upstream.status, gateway.stderr
    assert gateway.stdout == upstream.stdout
    assert gateway.stderr == upstream.stderr
    assert gateway.files == upstream.files


@pytest.mark.parametrize(
    "case",
    [
        (git_pw("patch", "list", "--limit", "5", "--page", "2"), "/api/1.2"),
        (git_pw("series", "download", SERIES, "out/"), "/api/1.1"),
        (git_pw("patch", "list", "--submitter", "Damien Lespiau", token=None, fails=True), "/api"),
        (pwclient("list", "-s", "Under Review"), "/api"),
        (pwclient("info", "999999", fails=True), "/api/1.0"),
    ],
    ids=case_id,
)
def test_the_console_scripts_print_the_same(servers: Servers, case: tuple[Command, str]) -> None:
    """The commands above run forked from a process that imported the
    clients: started as their console scripts, they print the same."""
    command, api = case
    base = servers.base("gateway", command, api)
    cwd = base / f"script-{CASES.index(case)}"
    (cwd / "out").mkdir(parents=True)
    result = subprocess.run(
        [str(BIN / command.client), *command.args],
        cwd=cwd,
        env=environment(base, PWCLIENTRC=str(base / "pwclientrc")),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    script = collect(cwd, result.returncode, result.stdout, result.stderr, servers.gateway)
    assert script == servers.outputs[case][1]


def test_the_commands_see_each_versions_differences(servers: Servers) -> None:
    """The cases above would hide nothing: version rules show in the output."""

    def out(command: Command, api: str) -> str:
        return servers.outputs[(command, api)][0].stdout

    by_hash = git_pw("patch", "list", "--hash", NEW_PATCH_HASH)
    hashed = out(by_hash, "/api/1.2").splitlines()
    assert [line.split(",")[0] for line in hashed] == ['"ID"', '"44"', '"28"']  # a resend
    assert len(out(by_hash, "/api/1.1").splitlines()) == 31  # ignored: a page
    assert out(by_hash, "/api/1.0") == out(by_hash, "/api/1.1")
    by_msgid = pwclient("list", "-m", NEW_PATCH_MSGID)
    assert len(out(by_msgid, "/api/1.2").splitlines()) == 3
    assert len(out(by_msgid, "/api/1.0").splitlines()) > 500
    wrapped = pwclient("list", "-m", f"<{NEW_PATCH_MSGID}>", empty=True)
    assert len(out(wrapped, "/api/1.2").splitlines()) == 2
    everything = pwclient("event-list", "--since", EVENTS_SINCE)
    assert "comment-created" in out(everything, "/api")
    assert "comment-created" not in out(everything, "/api/1.2")
    show = git_pw("bundle", "show", PUBLIC_BUNDLE)
    assert "/bundle/stephen/" in out(show, "/api/1.1")
    assert "/bundle/stephen/" not in out(show, "/api/1.0")  # web_url came with 1.1
    shown = out(git_pw("patch", "show", PATCH), "/api/1.2")
    assert PATCH_MSGID in shown and "accepted" in shown
    mbox = out(git_pw("patch", "download", PATCH, "-"), "/api")
    assert "Subject: [PATCH 4/12] newforms is just 'forms' now." in mbox


# ----------------------------------------------------------------------
# b4: look-ups by message id


def series_mbox(servers: Servers, series: dict[str, Any], name: str) -> Path:
    """A series' cover letter and patches as one mbox, as upstream serves them."""
    paths = [
        series["cover_letter"]["mbox"].removeprefix(servers.upstream),
        f"/series/{series['id']}/mbox/",
    ]
    mbox = servers.tmp / name
    mbox.write_bytes(b"\n".join(request("GET", servers.upstream + path).body for path in paths))
    return mbox


def b4(
    server: str,
    home: Path,
    lore: str,
    mbox: Path,
    msgid: str,
    review_state: str | None = None,
    *options: str,
) -> Output:
    """``b4 am`` of a local mbox with a patchwork at ``server`` configured."""
    home.mkdir()
    env = environment(home)
    subprocess.run(["git", "init", "-q"], cwd=home, env=env, check=True, timeout=TIMEOUT)
    shutil.copy(mbox, home / "local.mbx")
    settings = [
        f"b4.pw-url={server}/",
        f"b4.pw-key={tokens()['cibot']}",
        f"b4.pw-project={PROJECT}",
        f"b4.midmask={lore}/all/%s",  # lore: nowhere (a closed local port)
    ]
    if review_state:
        settings.append(f"b4.pw-review-state={review_state}")
    config = [arg for setting in settings for arg in ("-c", setting)]
    result = subprocess.run(
        [str(BIN / "b4"), "--no-stdin", *config, "am", *options, "-m", "local.mbx", msgid],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    netloc = urlsplit(server).netloc
    files = tuple(
        sorted(
            (p.name, p.read_text())
            for p in home.iterdir()
            if p.is_file() and p.suffix in (".mbx", ".cover") and p.name != "local.mbx"
        )
    )
    return Output(
        result.returncode,
        result.stdout.replace(netloc, "SERVER"),
        result.stderr.replace(netloc, "SERVER"),
        files,
    )


def test_b4_finds_patches_by_message_id(servers: Servers) -> None:
    """``b4 am`` with a patchwork configured looks each patch of the series
    up by message id (for its CI state, then to set its review state) and
    sets the state of those it found: the same patches, through the
    gateway as upstream.  (The read commands above all ran while the
    servers were set up, before this changes patches.)"""
    fake = servers.fake
    series = fake.render("series", int(SERIES), origin=servers.upstream)
    patch_ids = [p["id"] for p in series["patches"]]
    msgid = series["patches"][0]["msgid"].strip("<>")
    assert all(fake.render("patches", p)["state"] == "new" for p in patch_ids)
    mbox = series_mbox(servers, series, "series.mbx")
    lore = f"http://127.0.0.1:{free_port()}"

    outputs = {}
    patched = {}
    # The gateway first: its mirror sees the change it forwards.  Then the
    # states go back upstream and b4 asks upstream itself.
    for name, server in (("gateway", servers.gateway), ("upstream", servers.upstream)):
        fake.reset_requests()
        home = servers.tmp / f"b4-{name}"
        outputs[name] = b4(server, home, lore, mbox, msgid, review_state="under-review")
        patched[name] = [(r.path, r.form()) for r in fake.writes_received() if r.method == "PATCH"]
        if name == "upstream":
            # Without the slash, as b4 asks, then where the 301 sends it.
            for path in ("/api/1.2/patches?", "/api/1.2/patches/?"):
                wanted = f"GET {path}project={PROJECT}&archived=false&msgid={quote(msgid)}"
                assert wanted in fake.request_log, fake.request_log
        for patch in patch_ids:
            assert fake.render("patches", patch)["state"] == "under-review"
            fake.set_state(patch, "new")

    expected = [(f"/api/1.2/patches/{p}/", [("state", "under-review")]) for p in patch_ids]
    assert sorted(patched["upstream"]) == sorted(expected)
    assert sorted(patched["gateway"]) == sorted(expected)
    upstream, gateway = outputs["upstream"], outputs["gateway"]
    assert upstream.status == 0, upstream.stderr
    for patch in series["patches"]:
        assert f" -> under-review : {patch['name']}" in upstream.stderr + upstream.stdout
    assert gateway == upstream


# b4 sends its look-ups identified (``Authorization: Token``) and without
# the slash: the gateway answers them itself, with the 301 Patchwork sends,
# as it answers anonymous ones (it once forwarded them upstream: with
# upstream gone, b4 found nothing; and upstream's Location re-encoded
# ``%40`` as ``@``).


def test_b4_finds_patches_by_message_id_with_upstream_gone(servers: Servers) -> None:
    """b4 shows each patch's CI state (from the newest patch back to one that
    has none) from its look-ups by message id: a gateway whose upstream is
    gone shows what upstream showed."""
    series = servers.fake.render("series", CI_SERIES, origin=servers.upstream)
    mbox = series_mbox(servers, series, "ci-series.mbx")
    msgid = series["patches"][0]["msgid"].strip("<>")
    lore = f"http://127.0.0.1:{free_port()}"
    # -k: checks, the local ones (none here) and patchwork's CI state.
    upstream = b4(servers.upstream, servers.tmp / "b4-ci-upstream", lore, mbox, msgid, None, "-k")
    assert upstream.status == 0, upstream.stderr
    assert "patchwork: WARNING" in upstream.stderr + upstream.stdout
    mirror = copy_mirror(servers.tmp / "m.sqlite3", servers.tmp / "offline.sqlite3")
    port = free_port()
    gone = f"http://127.0.0.1:{free_port()}"
    config = write_config(servers.tmp / "offline.toml", gone, mirror, port)
    with GatewayProcess(config, port) as gateway:
        offline = b4(gateway.url, servers.tmp / "b4-ci-gateway", lore, mbox, msgid, None, "-k")
    assert offline == upstream


def test_b4s_lookups_redirect_as_upstream_redirects_them(servers: Servers) -> None:
    """The 301 of b4's own request (its msgid percent-encoded) is upstream's,
    ``%40`` kept as the client wrote it."""
    path = f"/api/1.2/patches?project={PROJECT}&archived=false&msgid={quote(PATCH_MSGID)}"
    token = {"Authorization": f"Token {tokens()['cibot']}"}
    upstream = request("GET", servers.upstream + path, token)
    gateway = request("GET", servers.gateway + path, token)
    assert (upstream.status, upstream.header("Location")) == (301, path.replace("?", "/?", 1))
    assert (gateway.status, gateway.header("Location")) == (301, upstream.header("Location"))
