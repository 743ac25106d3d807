"""Short forms of the soak and crash loops (``scripts/soak.py`` runs the
long ones and prints the figures)."""

from __future__ import annotations

import pytest

from tests.soak import crash_loop, soak

pytestmark = pytest.mark.slow


def test_a_short_soak_under_mixed_load_while_syncing(tmp_path):
    report = soak(tmp_path, seconds=8, concurrency=16)
    assert report.requests > 500
    assert report.own_5xx == 0, report.errors[:10]
    assert report.locked == 0
    assert report.statuses[200] > report.requests / 2
    assert report.changes > 10
    # Memory flat: after the first seconds, no growth worth the name.
    assert max(report.rss_mb[2:]) - report.rss_mb[2] < 40, report.rss_mb


def test_killed_again_and_again_no_5xx_and_the_mirror_ends_complete(tmp_path):
    report = crash_loop(tmp_path, cycles=6)
    assert report.kills == 6
    assert report.own_5xx == 0, report.errors[:10]
    assert report.stale == 0
