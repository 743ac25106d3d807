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

from tests.support import CRAWL, GatewayProcess, copy_mirror, free_port, write_config

pytestmark = pytest.mark.slow

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
            # (TMPDIR: git-pw's temporary folders go with the test's.)
            env={**os.environ, "GIT_PAGER": "cat", "PAGER": "cat", "TMPDIR": str(cwd), **env},
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


def _git_series(src: Path) -> tuple[str, list[Path]]:
    """A small history and its last three commits as mails; the base commit."""
    _run(["git", "init", "-q"], src)
    for key, value in (("user.name", "Ada Lovelace"), ("user.email", "ada@example.org")):
        _run(["git", "config", key, value], src)
    (src / "notes.txt").write_text("".join(f"line {n}\n" for n in range(1, 30)))
    _run(["git", "add", "notes.txt"], src)
    _run(["git", "commit", "-q", "-m", "base"], src)
    base = _run(["git", "rev-parse", "HEAD"], src).strip()
    for n, line in ((1, 3), (2, 13), (3, 23)):
        text = (src / "notes.txt").read_text().replace(f"line {line}\n", f"line {line}, fixed\n")
        (src / "notes.txt").write_text(text)
        _run(["git", "commit", "-q", "-am", f"notes: fix line {line}\n\nPart {n}."], src)
    out = _run(["git", "format-patch", "-q", "--thread", "-o", "mails", f"{base}..HEAD"], src)
    return base, sorted((src / "mails").glob("*.patch")) or [Path(p) for p in out.split()]


async def _add_series(mirror: Path, mails: list[Path]) -> tuple[int, list[int]]:
    """The mails as a new series of project 1, stored as the sync stores one."""
    import email
    import email.utils
    import sqlite3 as sqlite

    from mirror import schema, store
    from mirror.store import Batch

    conn = sqlite.connect(mirror)
    try:
        template = json.loads(conn.execute("SELECT doc FROM patches WHERE id = 7").fetchone()[0])
        series_doc = json.loads(conn.execute("SELECT doc FROM series WHERE id = 2").fetchone()[0])
        first = conn.execute("SELECT max(id) FROM patches").fetchone()[0] + 1
        series_id = conn.execute("SELECT max(id) FROM series").fetchone()[0] + 1
    finally:
        conn.close()
    batch = Batch()
    ids = []
    for offset, mail_path in enumerate(mails):
        mail = email.message_from_string(mail_path.read_text())
        body = mail.get_payload()
        content, _, diff = body.partition("\ndiff --git")
        msgid = mail["Message-Id"]
        url_id = msgid.strip("<>")
        obj_id = first + offset
        ids.append(obj_id)
        when = email.utils.parsedate_to_datetime(mail["Date"]).replace(tzinfo=None)
        headers = {k: v for k, v in mail.items()}
        batch.add(
            "patches",
            {
                **template,
                "id": obj_id,
                "msgid": msgid,
                "name": mail["Subject"].replace("[PATCH ", "[").replace("\n", ""),
                "web_url": f"/project/patchwork/patch/{url_id}/",
                "mbox": f"/project/patchwork/patch/{url_id}/mbox/",
                "date": when.isoformat(),
                "series": [series_id],
                "hash": f"{obj_id:040x}",
                "commit_ref": None,
                "headers": headers,
                "content": content.strip() + "\n",
                "diff": "diff --git" + diff,
            },
        )
    batch.add(
        "series",
        {
            **series_doc,
            "id": series_id,
            "web_url": f"/project/patchwork/list/?series={series_id}",
            "mbox": f"/series/{series_id}/mbox/",
            "name": "notes fixes",
            "cover_letter": None,
            "total": len(ids),
            "received_total": len(ids),
            "patches": ids,
        },
    )
    db = await schema.connect(mirror)
    try:
        await store.write(db, batch)
    finally:
        await db.close()
    return series_id, ids


def test_git_pw_and_pwclient_apply_with_upstream_gone(tmp_path, deployment):
    """``git-pw patch apply``, ``git-pw series apply`` and ``pwclient git-am``
    apply, through a gateway whose upstream is gone, what the mirror holds."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    import asyncio

    src = tmp_path / "src"
    src.mkdir()
    base, mails = _git_series(src)
    mirror = copy_mirror(deployment.storage, tmp_path / "offline.sqlite3")
    series_id, ids = asyncio.run(_add_series(mirror, mails))
    port = free_port()
    dead = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "offline.toml", dead, mirror, port)
    with GatewayProcess(config, port) as gateway:
        work = tmp_path / "work"
        _run(["git", "clone", "-q", str(src), str(work)], tmp_path)
        for key, value in (
            ("user.name", "Tester"),
            ("user.email", "tester@example.org"),
            ("pw.server", f"{gateway.url}/api/1.4"),
            ("pw.project", "patchwork"),
        ):
            _run(["git", "config", key, value], work)

        def reset() -> None:
            _run(["git", "reset", "-q", "--hard", base], work)

        def subjects() -> list[str]:
            return _run(["git", "log", "--format=%s", f"{base}..HEAD"], work).split("\n")[:-1]

        reset()
        _run([str(BIN / "git-pw"), "patch", "apply", str(ids[0])], work)
        assert subjects() == ["notes: fix line 3"]
        assert _run(["git", "log", "-1", "--format=%an <%ae>"], work).strip() == (
            "Ada Lovelace <ada@example.org>"
        )

        reset()
        _run([str(BIN / "git-pw"), "series", "apply", str(series_id)], work)
        assert subjects() == ["notes: fix line 23", "notes: fix line 13", "notes: fix line 3"]
        assert (work / "notes.txt").read_text() == (src / "notes.txt").read_text()

        reset()
        _run([str(BIN / "git-pw"), "patch", "apply", str(ids[2]), "--deps"], work)
        assert len(subjects()) == 3, "the patches before it, then it"

        reset()
        rc = tmp_path / "pwclientrc"
        rc.write_text(
            "[options]\ndefault = patchwork\n"
            f"[patchwork]\nbackend = rest\nurl = {gateway.url}/api/1.2\n"
        )
        _run([str(BIN / "pwclient"), "git-am", str(ids[0])], work, PWCLIENTRC=str(rc))
        assert subjects() == ["notes: fix line 3"]
