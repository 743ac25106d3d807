"""The real clients, git-pw and pwclient from PyPI, reading from the gateway."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path, **env: str) -> str:
    result = subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GIT_PAGER": "cat", "PAGER": "cat", **env},
        check=False,
    )
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


def test_git_pw_downloads_a_patch_through_the_redirect(repo):
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
