"""The offline pages in a real headless browser (Debian's chromium): they
render the diff, the checks and the series navigation with upstream gone.

Set PATCHWORK_GATEWAY_SCREENSHOTS=docs/screenshots to keep the pictures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
    ),
]

#: Background colours of the diff's lines and the check states (gateway.site.pages).
ADDED = (230, 255, 236)
REMOVED = (255, 235, 233)
HUNK = (221, 244, 255)


def _browser(args: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp / 'profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HOME": str(tmp)},
    )


def _shot(url: str, tmp: Path, name: str, height: int) -> Path:
    keep = os.environ.get("PATCHWORK_GATEWAY_SCREENSHOTS")
    target = (Path(keep) if keep else tmp) / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    done = _browser([f"--screenshot={target}", f"--window-size=1280,{height}", url], tmp)
    assert target.exists(), done.stderr[-2000:]
    return target


def _colours(png: Path) -> set[tuple[int, int, int]]:
    from PIL import Image

    with Image.open(png) as image:
        counted = image.convert("RGB").getcolors(maxcolors=1 << 24) or []
        return {colour for _, colour in counted}


def test_a_patch_page_renders_its_diff_checks_and_series(offline_gateway, tmp_path):
    url = offline_gateway.url + "/project/patchwork/patch/1219284397.847892-patch4@ozlabs.org/"
    dom = _browser(["--dump-dom", url], tmp_path).stdout
    assert "Series:" in dom and 'class="diff"' in dom
    assert 'class="check-' in dom, "patch 7 has checks"
    assert 'class="current"' in dom
    colours = _colours(_shot(url, tmp_path, "patch", 1600))
    for colour in (ADDED, REMOVED, HUNK):
        assert colour in colours, f"the diff's {colour} lines render"


def test_the_project_list_renders(offline_gateway, tmp_path):
    url = offline_gateway.url + "/project/patchwork/list/"
    dom = _browser(["--dump-dom", url], tmp_path).stdout
    assert dom.count("<tr>") > 10
    assert len(_colours(_shot(url, tmp_path, "list", 1000))) > 20
