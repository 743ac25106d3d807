"""What a change implies (sync.refresh.implied): one rule for the events
the sync follows and the writes the gateway reads back."""

from __future__ import annotations

import pytest

from sync.events import wanted as event_wanted
from sync.refresh import Change, Wanted, events_of, implied


def _event(category: str, **named: int) -> dict:
    return {"id": 1, "category": category, "payload": {k: {"id": v} for k, v in named.items()}}


def _as_sets(want: Wanted) -> tuple:
    return (want.details, want.sublists, want.series_of, want.related_of)


@pytest.mark.parametrize(
    ("event", "details", "sublists", "series_of", "related_of"),
    [
        (
            _event("patch-created", patch=7, series=3),
            {("series", 3)},
            set(),
            {("patches", 7)},
            set(),
        ),
        (_event("cover-created", cover=2), set(), set(), {("covers", 2)}, set()),
        (_event("patch-state-changed", patch=7), {("patches", 7)}, set(), set(), set()),
        (_event("patch-delegated", patch=7), {("patches", 7)}, set(), set(), set()),
        (_event("patch-relation-changed", patch=7), set(), set(), set(), {7}),
        # A check: the patch's checks list (deletions too) and the patch's
        # combined check.
        (_event("check-created", patch=7), {("patches", 7)}, {("checks", 7)}, set(), set()),
        (_event("patch-comment-created", patch=7), set(), {("patch_comments", 7)}, set(), set()),
        (_event("cover-comment-created", cover=2), set(), {("cover_comments", 2)}, set(), set()),
        (_event("series-completed", series=3), {("series", 3)}, set(), set(), set()),
        # A category of a newer Patchwork: whatever it names.
        (
            _event("patch-frobbed", patch=7, cover=2),
            {("patches", 7), ("covers", 2)},
            set(),
            set(),
            set(),
        ),
        # What it should name, missing: nothing.
        (_event("check-created"), set(), set(), set(), set()),
    ],
)
def test_each_event_category_reads_what_it_changed(event, details, sublists, series_of, related_of):
    assert _as_sets(event_wanted(event)) == (details, sublists, series_of, related_of)


@pytest.mark.parametrize(
    ("change", "details", "sublists", "related_of", "events"),
    [
        (Change("patches", 7, how="written"), set(), set(), {7}, {"patch": 7}),
        (
            Change("checks", None, 7, "written"),
            {("patches", 7)},
            {("checks", 7)},
            set(),
            {"patch": 7},
        ),
        (
            Change("patch_comments", 4, 7, "written"),
            set(),
            {("patch_comments", 7)},
            set(),
            {"patch": 7},
        ),
        (
            Change("cover_comments", 4, 2, "written"),
            set(),
            {("cover_comments", 2)},
            set(),
            {"cover": 2},
        ),
        (Change("bundles", 5, how="written"), {("bundles", 5)}, set(), set(), {}),
        (Change("users", 1, how="written"), {("users", 1)}, set(), set(), {}),
        (Change("bundles", None, how="written"), set(), set(), set(), {}),
    ],
)
def test_each_write_reads_back_what_it_changed_and_its_events(
    change, details, sublists, related_of, events
):
    want = implied(change)
    assert (want.details, want.sublists, want.related_of) == (details, sublists, related_of)
    assert events_of(change) == events
