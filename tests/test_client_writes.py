"""The real clients' write commands, git-pw and pwclient from PyPI, through
the gateway to a Patchwork (the stateful fake), and read back from it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sync.recorded import read_records
from tests.fake import FakePatchwork
from tests.support import (
    FIXTURES,
    gateway_on_fake,
    request,
    tokens,
    with_recorded_identities,
)
from tests.test_clients import BIN, _run

pytestmark = pytest.mark.slow


@dataclass
class Setup:
    fake: FakePatchwork
    gateway: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("client-writes")
    fake = with_recorded_identities(
        FakePatchwork.from_records(read_records(FIXTURES / "crawl.jsonl.xz"))
    )
    with gateway_on_fake(fake, tmp) as (_, gateway):
        yield Setup(fake, gateway.url)


@pytest.fixture
def repo(tmp_path: Path, setup: Setup) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    _run(["git", "init", "-q"], tmp_path)
    for key, value in (
        ("pw.server", f"{setup.gateway}/api/1.4"),
        ("pw.project", "patchwork"),
        ("pw.token", tokens()["stephen"]),
        ("pw.format", "simple"),
    ):
        _run(["git", "config", key, value], tmp_path)
    return tmp_path


def _git_pw(repo: Path, *args: str) -> str:
    return _run([str(BIN / "git-pw"), *args], repo, TMPDIR=str(repo))


def test_git_pw_updates_a_patch_and_shows_it_at_once(repo, setup):
    sha = "0123456789abcdef0123456789abcdef01234567"
    _git_pw(repo, "patch", "update", "--state", "under-review", "--commit-ref", sha, "28")
    _git_pw(repo, "patch", "update", "--archived", "true", "28")
    _git_pw(repo, "patch", "update", "--delegate", "cibot", "28")
    patch = setup.fake.render("patches", 28)
    assert (patch["state"], patch["commit_ref"], patch["archived"]) == ("under-review", sha, True)
    assert patch["delegate"]["username"] == "cibot"
    shown = _git_pw(repo, "patch", "show", "28")  # read from the gateway's mirror
    for value in ("under-review", sha, "cibot"):
        assert value in shown


def test_git_pw_bundles_create_update_and_delete(repo, setup):
    created = _git_pw(repo, "bundle", "create", "--public", "gw-bundle", "28", "29")
    assert "gw-bundle" in created
    bundle = next(
        b for b in (setup.fake.render("bundles", i) for i in setup.fake.ids("bundles"))
        if b["name"] == "gw-bundle"
    )  # fmt: skip
    bid = str(bundle["id"])
    _git_pw(repo, "bundle", "add", bid, "30")
    _git_pw(repo, "bundle", "remove", bid, "29")
    _git_pw(repo, "bundle", "update", "--name", "gw-renamed", bid)
    assert [p["id"] for p in setup.fake.render("bundles", bundle["id"])["patches"]] == [28, 30]
    assert "gw-renamed" in _git_pw(repo, "bundle", "list")
    _git_pw(repo, "bundle", "delete", bid)
    assert bundle["id"] not in setup.fake.ids("bundles")


def _pwclient(tmp: Path, setup: Setup, *args: str) -> str:
    rc = tmp / "pwclientrc"
    rc.write_text(
        "[options]\ndefault = patchwork\n"
        f"[patchwork]\nbackend = rest\nurl = {setup.gateway}/api/1.2\n"
        f"token = {tokens()['stephen']}\n"
    )
    return _run([str(BIN / "pwclient"), *args], tmp, PWCLIENTRC=str(rc), TMPDIR=str(tmp))


def test_pwclient_updates_and_creates_checks_through_the_gateway(tmp_path, setup):
    _pwclient(tmp_path, setup, "update", "-s", "Changes Requested", "-a", "no", "31")
    _pwclient(tmp_path, setup, "update", "-s", "accepted", "-c", "feedbeef", "31")
    assert setup.fake.render("patches", 31)["state"] == "accepted"
    info = _pwclient(tmp_path, setup, "info", "31")
    assert "accepted" in info and "feedbeef" in info
    _pwclient(
        tmp_path, setup, "check-create", "-c", "gw-ci", "-s", "success", "-u",
        "https://ci.example.org/1", "-d", "passed", "31",
    )  # fmt: skip
    checks = _pwclient(tmp_path, setup, "check-list", "31")
    assert "gw-ci" in checks  # read back from the mirror at once


def test_pwclient_over_xmlrpc_through_the_gateway(tmp_path, setup):
    """XML-RPC is forwarded as it is (Python's xmlrpc.client follows no
    redirect), and a patch it changes is read back at once."""
    rc = tmp_path / "pwclientrc"
    rc.write_text(
        "[options]\ndefault = patchwork\n"
        f"[patchwork]\nbackend = xmlrpc\nurl = {setup.gateway}/xmlrpc/\n"
        "username = stephen\npassword = pw-stephen\n"
    )
    pwclient = str(BIN / "pwclient")
    env = {"PWCLIENTRC": str(rc), "TMPDIR": str(tmp_path)}
    assert "patchwork" in _run([pwclient, "projects"], tmp_path, **env)
    _run([pwclient, "update", "-s", "rejected", "33"], tmp_path, **env)
    assert setup.fake.render("patches", 33)["state"] == "rejected"
    info = _run([pwclient, "info", "33"], tmp_path, **env)
    assert "rejected" in info.lower()
    read = request("GET", f"{setup.gateway}/api/1.4/patches/33/")
    assert read.header("X-Patchwork-Gateway") == "mirror"
    assert json.loads(read.body)["state"] == "rejected"
