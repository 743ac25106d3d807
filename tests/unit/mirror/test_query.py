"""Query parameters narrowing a list, with Patchwork's semantics
(mirror.query): ids or names, repeated values, values naming nothing, the
versions filters appeared in, dates, and ``q``'s search terms."""

from __future__ import annotations

import pytest

from mirror.query import search_terms
from tests.unit.mirror.conftest import Listing, Make, patch, person, project, user


@pytest.fixture
async def patches(mirror: Make) -> Listing:
    """Four patches in three projects (two link names differ by ``_`` only)."""
    return await mirror(
        projects=[project(1, "alpha"), project(2, "beta_1"), project(3, "betax1")],
        people=[
            person(10, "ann@example.com"),
            person(11, "bob_b@example.com"),
            person(12, "bobxb@example.com"),
            person(13, "Carl@Example.COM"),
        ],
        users=[user(20, "maint"), user(21, "other")],
        series=[{"id": 30, "project": 1}, {"id": 31, "project": 2}],
        patches=[
            patch(
                1,
                submitter=10,
                delegate=20,
                series=[30],
                date="2024-01-01T10:00:00",
                name="Fix the frobnicator",
                hash="ABCDEF0123456789ABCDEF0123456789ABCDEF01",
                msgid="<one@example.org>",
            ),
            patch(
                2,
                submitter=11,
                state="under-review",
                archived=True,
                series=[30],
                date="2024-01-02T10:00:00",
                name="Add 100% more_tests",
            ),
            patch(
                3,
                project=2,
                submitter=12,
                delegate=21,
                state="accepted",
                series=[31],
                date="2024-01-03T10:00:00",
                name="frob: FROB the widget",
            ),
            patch(
                4,
                project=3,
                submitter=13,
                state="changes-requested",
                series=[31],
                date="2024-01-04T10:00:00",
                name="Ünïcode Frob",
            ),
        ],
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", [1, 2, 3, 4]),
        ("project=1", [1, 2]),
        ("project=alpha", [1, 2]),
        ("project=ALPHA", [1, 2]),
        # A name is compared as it is: ``_`` is no wildcard.
        ("project=beta_1", [3]),
        ("project=1&project=beta_1", [1, 2, 3]),
        ("project=99", []),
        ("project=1&project=nonesuch", []),
        ("submitter=11", [2]),
        ("submitter=bob_b@example.com", [2]),
        ("submitter=BOB_B@EXAMPLE.COM", [2]),
        ("submitter=carl@example.com", [4]),
        ("submitter=%25@example.com", []),
        ("delegate=maint", [1]),
        ("delegate=21", [3]),
        ("delegate=nobody", []),
        ("series=30", [1, 2]),
        ("series=99", []),
        ("nonsense=1", [1, 2, 3, 4]),
        ("project=1&archived=false", [1]),
    ],
)
async def test_references_by_id_or_name_repeated_values_any_of(
    patches: Listing, query: str, expected: list[int]
) -> None:
    assert await patches.ids("patches", query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=1", [1]),
        ("state=under-review", [2]),
        ("state=Under Review", [2]),
        ("state=ACCEPTED", [3]),
        ("state=changes-requested", [4]),
        ("state=new&state=accepted", [1, 3]),
        ("state=under_review", []),
        ("state=bogus", []),
    ],
)
async def test_states_by_id_slug_or_name(patches: Listing, query: str, expected: list[int]) -> None:
    assert await patches.ids("patches", query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("archived=true", [2]),
        ("archived=TRUE", [2]),
        ("archived=1", [2]),
        ("archived=false", [1, 3, 4]),
        ("archived=0", [1, 3, 4]),
        ("archived=true&archived=false", [1, 3, 4]),
        ("archived=maybe", [1, 2, 3, 4]),
        ("archived=", [1, 2, 3, 4]),
    ],
)
async def test_flags_take_the_last_value_and_ignore_others(
    patches: Listing, query: str, expected: list[int]
) -> None:
    assert await patches.ids("patches", query) == expected


@pytest.mark.parametrize(
    ("query", "version", "expected"),
    [
        ("hash=abcdef0123456789abcdef0123456789abcdef01", "1.2", [1]),
        ("hash=abcdef0123456789abcdef0123456789abcdef01", "1.1", [1, 2, 3, 4]),
        ("hash=0", "1.4", []),
        ("msgid=one@example.org", "1.2", [1]),
        ("msgid=<one@example.org>", "1.2", []),
        ("msgid=one@example.org", "1.1", [1, 2, 3, 4]),
    ],
)
async def test_filters_apply_from_the_version_that_introduced_them(
    patches: Listing, query: str, version: str, expected: list[int]
) -> None:
    assert await patches.ids("patches", query, version=version) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("since=2024-01-02", [2, 3, 4]),
        ("since=2024-01-02T10:00:00", [2, 3, 4]),
        ("since=2024-01-02T10:00:01", [3, 4]),
        ("before=2024-01-02T10:00:00", [1]),
        ("since=2024-01-02 10:00", [2, 3, 4]),
        ("since=2024-1-2T10:00", [2, 3, 4]),
        ("since=2024-01-02T11:00:00%2B01:00", [2, 3, 4]),
        ("since=2024-01-02T10:00:00Z&before=2024-01-04", [2, 3]),
        ("since=2024-01-02&since=2024-01-04", [4]),
        ("since=", [1, 2, 3, 4]),
        ("since=yesterday", []),
        ("since=2024-02-30", []),
    ],
)
async def test_dates_in_the_forms_django_reads_and_utc(
    patches: Listing, query: str, expected: list[int]
) -> None:
    assert await patches.ids("patches", query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q=frob", [1, 3, 4]),
        ("q=FROB widget", [3]),
        ("q=frob,widget", [3]),
        ('q="frob the"', [3]),
        ("q=Fi", [1]),
        # ``%`` and ``_`` are searched for, not wildcards.
        ("q=100%25", [2]),
        ("q=more_tests", [2]),
        ("q=1%25t", []),
        ("q=e_f", []),
        # Case folds for ASCII letters only, as Django's LIKE on SQLite.
        ("q=ünï", []),
        ("q=Ünï", [4]),
        ("q=frob nonesuch", []),
    ],
)
async def test_search_terms_must_all_be_found_in_some_searched_field(
    patches: Listing, query: str, expected: list[int]
) -> None:
    assert await patches.ids("patches", query) == expected


async def test_a_search_covers_every_searched_field(patches: Listing) -> None:
    assert await patches.ids("projects", "q=beta") == [2, 3]
    assert await patches.ids("people", "q=bob") == [11, 12]
    assert await patches.ids("people", "q=example.com bob_") == [11]


@pytest.mark.parametrize(
    ("value", "terms"),
    [
        ("one two", ["one", "two"]),
        ("one,two, three", ["one", "two", "three"]),
        ('"one two" three', ["one two", "three"]),
        ("'one, two'", ["one, two"]),
        ('"say \\"hi\\""', ['say "hi"']),
        ("  ", []),
    ],
)
def test_q_splits_into_terms_as_drfs_search_filter_does(value: str, terms: list[str]) -> None:
    assert search_terms(value) == terms


@pytest.fixture
async def events(mirror: Make) -> Listing:
    categories = ["patch-created", "patch-comment-created", "check-created", "patch-created"]
    return await mirror(
        projects=[project(1, "alpha"), project(2, "beta")],
        users=[user(20, "maint"), user(21, "other")],
        events=[
            {
                "id": i,
                "category": category,
                "project": 1 + i % 2,
                "date": f"2024-01-0{i}T00:00:00",
                "actor": 20 + i % 2,
            }
            for i, category in enumerate(categories, 1)
        ],
    )


@pytest.mark.parametrize(
    ("query", "version", "expected"),
    [
        ("", "1.4", [4, 3, 2, 1]),
        # Comment events appeared with API 1.3.
        ("", "1.2", [4, 3, 1]),
        ("category=patch-created", "1.4", [4, 1]),
        ("category=bogus", "1.4", []),
        ("project=beta", "1.4", [3, 1]),
        ("actor=20", "1.2", [4]),
        ("actor=20", "1.3", [4, 2]),
        ("actor=20", "1.1", [4, 3, 1]),
        # By id only, and a single value: the last.
        ("actor=maint", "1.4", []),
        ("actor=20&actor=21", "1.4", [3, 1]),
    ],
)
async def test_events_by_category_project_and_actor(
    events: Listing, query: str, version: str, expected: list[int]
) -> None:
    assert await events.ids("events", query, version=version) == expected


@pytest.fixture
async def checks(mirror: Make) -> Listing:
    states = ["success", "fail", "success", "pending"]
    return await mirror(
        users=[user(20, "maint")],
        patches=[patch(1), patch(2)],
        checks=[
            {"id": i, "patch": 1 if i < 4 else 2, "user": 20, "state": state, "context": f"c{i}"}
            for i, state in enumerate(states, 1)
        ],
    )


async def test_checks_are_listed_under_their_patch_by_state_number(checks: Listing) -> None:
    assert await checks.ids("checks", parent=1) == [1, 2, 3]
    assert await checks.ids("checks", "state=1", parent=1) == [1, 3]
    assert await checks.ids("checks", "state=success", parent=1) == []
    assert await checks.ids("checks", "context=c2&user=maint", parent=1) == [2]


async def test_check_filters_also_hide_a_detail(checks: Listing) -> None:
    assert await checks.detail("checks", 2, "state=3") is not None
    assert await checks.detail("checks", 2, "state=1") is None


async def test_a_covers_series_must_also_be_a_projects_id(mirror: Make) -> None:
    """Patchwork validates covers' ``series`` against projects (see
    docs/compatibility.md); a series passing that is then filtered on."""
    covers = [{"id": i, "project": 1, "series": [series]} for i, series in ((1, 1), (2, 30))]
    listing = await mirror(projects=[project(1, "alpha")], covers=covers)
    assert await listing.ids("covers", "series=1") == [1]
    assert await listing.ids("covers", "series=30") == []


async def test_private_bundles_are_never_listed(mirror: Make) -> None:
    listing = await mirror(
        users=[user(20, "maint")],
        bundles=[
            {"id": 1, "project": 1, "owner": 20, "name": "b", "public": True},
            {"id": 2, "project": 1, "owner": 20, "name": "c", "public": False},
        ],
    )
    assert await listing.ids("bundles") == [1]
    assert await listing.ids("bundles", "public=false") == []
    assert await listing.ids("bundles", "owner=maint") == [1]
    assert await listing.count("bundles") == 1
