"""``order``, and how rows it leaves tied come out (mirror.query.order).

Upstream's SQLite breaks ties by the index it reads the list from, which
depends on the ordering, the filters and even the page size (see
mirror.model.Ordering).  Each test lists a small mirror whose rows tie, and
fails if a tie-break changes.
"""

from __future__ import annotations

import pytest

from mirror.query import order
from mirror.resources import RESOURCES
from tests.unit.mirror.conftest import Listing, Make, patch, person, project, user

HASH = "0" * 40


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", [1, 2, 3, 4]),
        ("order=-id", [4, 3, 2, 1]),
        ("order=name", [3, 1, 4, 2]),
        ("order=-name", [2, 4, 1, 3]),
        ("order=bogus", [1, 2, 3, 4]),
        ("order=bogus,-name", [2, 4, 1, 3]),
        ("order=name&order=-id", [4, 3, 2, 1]),
        # A field named twice counts where first named.
        ("order=-name,name", [2, 4, 1, 3]),
    ],
)
async def test_order_names_fields_and_a_minus_reverses(
    mirror: Make, query: str, expected: list[int]
) -> None:
    names = ["b", "d", "a", "c"]
    listing = await mirror(patches=[patch(i, name=n) for i, n in enumerate(names, 1)])
    assert await listing.ids("patches", query) == expected


async def test_order_by_project_state_and_check_sort_by_what_they_name(mirror: Make) -> None:
    listing = await mirror(
        projects=[project(1, "zeta"), project(2, "alpha")],
        users=[user(20, "ci")],
        patches=[
            patch(1, state="accepted"),
            patch(2, project=2, state="new"),
            patch(3, state="under-review"),
        ],
        checks=[
            {"id": 1, "patch": 2, "user": 20, "state": "success"},
            {"id": 2, "patch": 3, "user": 20, "state": "success"},
            {"id": 3, "patch": 2, "user": 20, "state": "fail"},
        ],
        # An upstream whose own order of states puts "accepted" first.
        sql=("UPDATE states SET ordering = -1 WHERE slug = 'accepted'",),
    )
    assert await listing.ids("patches", "order=project") == [2, 1, 3]
    assert await listing.ids("patches", "order=state") == [1, 2, 3]
    # One row per check, in check order, patches without checks first.
    assert await listing.ids("patches", "order=check") == [1, 2, 3, 2]
    assert await listing.count("patches", "order=check") == 3


async def test_ties_of_an_ordered_column_with_an_index_follow_its_walk(mirror: Make) -> None:
    """``submitter`` is read off its own index: backwards for ``-submitter``
    (ties in descending ids); a project's patches are sorted after the
    project index narrows them (ties in ascending ids)."""
    listing = await mirror(
        projects=[project(1, "alpha")],
        people=[person(10, "ann@example.com"), person(11, "bob@example.com")],
        patches=[patch(i, submitter=10 + i % 2) for i in (1, 2, 3, 4)],
    )
    assert await listing.ids("patches", "order=submitter") == [2, 4, 1, 3]
    assert await listing.ids("patches", "order=-submitter") == [3, 1, 4, 2]
    assert await listing.ids("patches", "order=-submitter&project=1") == [1, 3, 2, 4]
    # One submitter pins the ordered column: the index is walked forward.
    assert await listing.ids("patches", "order=-submitter&submitter=11") == [1, 3]


@pytest.fixture
async def tied(mirror: Make) -> Listing:
    """Five patches of one name and hash, apart in archived, state, delegate
    and date: the first columns of upstream's covering index."""
    rows = {
        1: {"date": "2024-01-02T00:00:00"},
        2: {"delegate": 20},
        3: {"archived": True},
        4: {"state": "accepted"},
        5: {},
    }
    return await mirror(
        projects=[project(1, "alpha")],
        users=[user(20, "maint")],
        patches=[
            patch(i, name="same", hash=HASH, date="2024-01-01T00:00:00") | row
            for i, row in rows.items()
        ],
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # Sorted off the covering index: archived, state, delegate, date...
        ("order=name", [5, 1, 2, 4, 3]),
        ("order=-name", [5, 1, 2, 4, 3]),
        ("order=-date", [1, 5, 2, 4, 3]),
        # ... which a filter on another column makes upstream leave.
        ("order=name&hash=" + HASH, [1, 2, 3, 4, 5]),
        # Narrowed by the project index: ties in ascending ids.
        ("order=name&project=1", [1, 2, 3, 4, 5]),
        ("order=-date&project=1", [1, 2, 3, 4, 5]),
        # The covering index walked, backwards for a descending sort.
        ("order=archived", [5, 1, 2, 4, 3]),
        ("order=-archived", [3, 4, 2, 1, 5]),
    ],
)
async def test_patches_tied_follow_the_covering_index_upstream_reads(
    tied: Listing, query: str, expected: list[int]
) -> None:
    assert await tied.ids("patches", query) == expected


async def test_covers_of_one_date_follow_project_submitter_and_name(mirror: Make) -> None:
    covers = [
        {"id": 1, "project": 1, "submitter": 10, "name": "z"},
        {"id": 2, "project": 2, "submitter": 10, "name": "b"},
        {"id": 3, "project": 1, "submitter": 10, "name": "a"},
        {"id": 4, "project": 1, "submitter": 11, "name": "a"},
    ]
    listing = await mirror(covers=[c | {"date": "2024-01-01T00:00:00"} for c in covers])
    assert await listing.ids("covers", "order=date") == [3, 1, 4, 2]
    assert await listing.ids("covers", "order=-date") == [2, 4, 1, 3]


async def test_a_small_page_of_a_date_range_sorts_ties_by_date(mirror: Make) -> None:
    """Upstream sorts what a date range yields rather than walk the ordered
    column's index when a page holds at most 5 rows, or the range is
    bounded on both sides."""
    by_date = [3, 1, 4, 7, 2, 6, 5]
    listing = await mirror(
        covers=[
            {"id": i, "project": 1, "submitter": 10, "date": f"2024-01-0{day}T00:00:00"}
            for day, i in enumerate(by_date, 1)
        ]
    )
    since = "order=-submitter&since=2000-01-01"
    assert await listing.ids("covers", since) == [7, 6, 5, 4, 3, 2, 1]
    assert await listing.ids("covers", since, limit=5) == by_date[:5]
    assert await listing.ids("covers", since + "&before=2100-01-01") == by_date


async def test_events_of_one_date_come_in_ascending_ids_even_newest_first(mirror: Make) -> None:
    events = [
        {"id": i, "category": "patch-created", "project": 1, "date": date}
        for i, date in ((1, "2024-01-01"), (2, "2024-01-01"), (3, "2024-01-01"), (4, "2024-01-02"))
    ]
    listing = await mirror(events=events)
    assert await listing.ids("events") == [4, 1, 2, 3]
    assert await listing.ids("events", "order=date") == [1, 2, 3, 4]


async def test_a_patchs_comments_of_one_date_follow_the_walk_of_its_index(mirror: Make) -> None:
    dates = {1: "2024-01-01", 2: "2024-01-01", 3: "2024-01-01", 4: "2024-01-02"}
    listing = await mirror(
        patches=[patch(1)],
        patch_comments=[{"id": i, "patch": 1, "date": date} for i, date in dates.items()],
    )
    assert await listing.ids("patch_comments", parent=1) == [1, 2, 3, 4]
    assert await listing.ids("patch_comments", "order=-date", parent=1) == [4, 3, 2, 1]
    assert await listing.ids("patch_comments", "order=date", parent=1) == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("resource", "query", "limit", "order_by"),
    [
        (
            "patches",
            "order=-date",
            30,
            "t.date DESC, t.archived, t.state_id, t.delegate_id, t.project_id, "
            "t.submitter_id, t.name, t.id",
        ),
        ("patches", "order=-submitter", 30, "t.submitter_id DESC, t.id DESC"),
        ("patches", "order=-submitter&project=1", 30, "t.submitter_id DESC, t.project_id, t.id"),
        (
            "patches",
            "order=name",
            30,
            "t.name, t.archived, t.state_id, t.delegate_id, t.date, t.project_id, "
            "t.submitter_id, t.id",
        ),
        ("patches", "order=state", 30, "o_state.ordering, t.id"),
        (
            "covers",
            "order=-date",
            30,
            "t.date DESC, t.project_id DESC, t.submitter_id DESC, t.name DESC, t.id DESC",
        ),
        ("covers", "order=-submitter&since=2000-01-01", 30, "t.submitter_id DESC, t.id DESC"),
        (
            "covers",
            "order=-submitter&since=2000-01-01",
            5,
            "t.submitter_id DESC, t.date, t.project_id, t.name, t.id",
        ),
        ("events", "", 30, "t.date DESC, t.id"),
        ("patch_comments", "order=-date", 30, "t.date DESC, t.id DESC"),
    ],
)
async def test_what_an_ordering_compiles_to(
    mirror: Make, resource: str, query: str, limit: int, order_by: str
) -> None:
    """The ORDER BY of each rule above, for reading at a glance."""
    listing = await mirror(projects=[project(1, "alpha")], patches=[patch(1)])
    parent = 1 if RESOURCES[resource].parent else None
    q = await listing.query(resource, query, "1.4", parent)
    order(RESOURCES[resource], q, limit)
    assert q.order_by == order_by
