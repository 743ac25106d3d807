"""The real clients, git-pw and pwclient from PyPI, reading from the gateway."""

from __future__ import annotations

import json
import lzma
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import CRAWL

BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path, stdin_path: str | None = None, **env: str) -> str:
    stdin = open(stdin_path) if stdin_path else None  # noqa: SIM115 (closed below)
    try:
        result = subprocess.run(
            args,
            cwd=cwd,
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "GIT_PAGER": "cat", "PAGER": "cat", **env},
            check=False,
        )
    finally:
        if stdin is not None:
            stdin.close()
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def repo(tmp_path, deployment):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    _run(["git", "init", "-q"], tmp_path)
    _run(["git", "config", "pw.server", f"{deployment.gateway}/api/1.4"], tmp_path)
    _run(["git", "config", "pw.project", "patchwork"], tmp_path)
    _run(["git", "config", "pw.format", "simple"], tmp_path)
    return tmp_path


def test_git_pw_lists_and_shows_patches(repo):
    listed = _run(
        [
            str(BIN / "git-pw"),
            "patch",
            "list",
            "--state",
            "under-review",
            "--sort",
            "id",
            "--limit",
            "3",
        ],
        repo,
    )
    assert "[4/5] Exclude packages tree from separate .gitignore file" in listed  # 8: archived
    shown = _run([str(BIN / "git-pw"), "patch", "show", "7"], repo)
    assert "<1219284397.847892-patch4@ozlabs.org>" in shown
    assert "accepted" in shown


def test_git_pw_downloads_a_patch(repo):
    mbox = _run([str(BIN / "git-pw"), "patch", "download", "7", "-"], repo)
    assert "Subject: [PATCH 4/12] newforms is just 'forms' now." in mbox


def test_git_pw_lists_series_and_bundles(repo):
    series = _run([str(BIN / "git-pw"), "series", "list", "--limit", "2"], repo)
    assert "views/xmlrpc: Add documentation for API methods" in series
    bundles = _run([str(BIN / "git-pw"), "bundle", "list"], repo)
    assert "patchwork-andrew-0" in bundles
    assert "patchwork-stephen-1" not in bundles  # private


def test_pwclient_lists_infos_and_checks(tmp_path, deployment):
    rc = tmp_path / "pwclientrc"
    rc.write_text(
        "[options]\ndefault = patchwork\n"
        f"[patchwork]\nbackend = rest\nurl = {deployment.gateway}/api/1.2\n"
    )
    pwclient = str(BIN / "pwclient")
    listed = _run([pwclient, "list", "-s", "Under Review"], tmp_path, PWCLIENTRC=str(rc))
    assert "Use new django admin infrastructure" in listed
    info = _run([pwclient, "info", "7"], tmp_path, PWCLIENTRC=str(rc))
    assert "d393cb56214f6d25f83362be0cf61ff61f2541f4" in info
    checks = _run([pwclient, "check-list", "7"], tmp_path, PWCLIENTRC=str(rc))
    assert "checkpatch" in checks
    events = _run([pwclient, "event-list", "-c", "series-completed"], tmp_path, PWCLIENTRC=str(rc))
    assert "series-completed" in events


def test_git_pw_downloads_patches_and_series_with_upstream_gone(tmp_path, offline_gateway):
    """What ``git-pw patch apply`` and ``series apply`` feed ``git am``:
    upstream's bytes, from the mirror, and git reads them as mail."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    recorded = {r["path"]: r["body"] for r in _recorded_mboxes()}
    work = tmp_path / "work"
    work.mkdir()
    _run(["git", "init", "-q"], work)
    _run(["git", "config", "pw.server", f"{offline_gateway.url}/api/1.4"], work)
    _run(["git", "config", "pw.project", "patchwork"], work)
    _run([str(BIN / "git-pw"), "patch", "download", "7", "patch.mbox"], work)
    patch = (work / "patch.mbox").read_text()
    assert patch in recorded.values()
    _run([str(BIN / "git-pw"), "series", "download", "2", "series.mbox"], work)
    assert (work / "series.mbox").read_text() == recorded["/series/2/mbox/"]
    (work / "split").mkdir()
    count = _run(["git", "mailsplit", "-osplit", "series.mbox"], work).strip()
    assert int(count) >= 2
    info = _run(["git", "mailinfo", "msg", "diff"], work, stdin_path=str(work / "split" / "0001"))
    assert "Author: " in info and "Subject: " in info
    assert (work / "diff").read_text().startswith(("diff", "---", "Index"))


def _recorded_mboxes() -> list[dict]:
    with lzma.open(CRAWL, "rt") as lines:
        return [json.loads(line) for line in lines if '"crawl.mbox.' in line]
