"""Stored documents rendered as Patchwork's JSON for each API version and
origin (gateway.api.render): which fields each version shows, in the shapes
objects are embedded in, with URLs pointing at the caller's origin."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from gateway.api.render import Context, Embeds, effective_version, embedded_renderer, renderer
from mirror.model import Doc, Ref
from mirror.resources import RESOURCES
from mirror.versions import VERSIONS
from sync.recorded import PLACEHOLDER
from tests.unit.recorded import INSTANCES, ApiPath, api_path, crawl_docs, records

ORIGIN = "https://gw.example:8443"

#: Each resource's list item at API 1.4, in order; and the version of each
#: field newer than 1.0 (Patchwork's serializers).
FIELDS = {
    "projects": "id url name link_name list_id list_email web_url scm_url webscm_url maintainers"
    " subject_match list_archive_url list_archive_url_format commit_url_format show_dependencies",
    "people": "id url name email user",
    "users": "id url username first_name last_name email",
    "patches": "id url web_url project msgid list_archive_url date name commit_ref pull_url state"
    " archived hash submitter delegate mbox series comments check checks tags related",
    "covers": "id url web_url project msgid list_archive_url date name submitter mbox series"
    " comments",
    "series": "id url web_url project name date submitter version total received_total"
    " received_all mbox cover_letter patches dependencies dependents",
    "bundles": "id url web_url project name owner patches public mbox",
    "checks": "id url user date state target_url context description",
    "patch_comments": "id url web_url msgid list_archive_url date subject submitter content"
    " headers addressed",
    "events": "id category project date actor payload",
}
FIELDS["cover_comments"] = FIELDS["patch_comments"]
_COMMENTS = {"web_url": "1.1", "list_archive_url": "1.2", "url": "1.3", "addressed": "1.3"}
SINCE = {
    "projects": {
        "subject_match": "1.1",
        "list_archive_url": "1.2",
        "list_archive_url_format": "1.2",
        "commit_url_format": "1.2",
        "show_dependencies": "1.4",
    },
    "patches": {"web_url": "1.1", "comments": "1.1", "list_archive_url": "1.2", "related": "1.2"},
    "covers": {"web_url": "1.1", "mbox": "1.1", "comments": "1.1", "list_archive_url": "1.2"},
    "series": {"web_url": "1.1", "dependencies": "1.4", "dependents": "1.4"},
    "bundles": {"web_url": "1.1"},
    "patch_comments": _COMMENTS,
    "cover_comments": _COMMENTS,
}
#: What a detail shows beyond the list item.
DETAIL_ONLY = {"patches": "headers content diff prefixes", "covers": "headers content"}

#: The compact shape an object is embedded in, at 1.4, and its newer fields.
EMBEDDED = {
    "projects": "id url name link_name list_id list_email web_url scm_url webscm_url"
    " list_archive_url list_archive_url_format commit_url_format",
    "people": "id url name email",
    "users": "id url username first_name last_name email",
    "patches": "id url web_url msgid list_archive_url date name mbox",
    "covers": "id url web_url msgid list_archive_url date name mbox",
    "series": "id url web_url date name version mbox",
    "checks": "id url date state target_url context",
    "patch_comments": "id url web_url msgid list_archive_url date",
}
_LINKS = {"web_url": "1.1", "list_archive_url": "1.2"}
EMBEDDED_SINCE = {
    "projects": dict.fromkeys(
        ("list_archive_url", "list_archive_url_format", "commit_url_format"), "1.2"
    ),
    "patches": _LINKS,
    "covers": _LINKS | {"mbox": "1.1"},
    "series": {"web_url": "1.1"},
    "patch_comments": _LINKS | {"url": "1.3"},
}


def shown(names: str, since: dict[str, str], version: str) -> list[str]:
    """The ``names`` a ``version`` shows, by the version each appeared in."""
    return [n for n in names.split() if since.get(n, "1.0").split(".") <= version.split(".")]


def docs(**changes: dict[str, Any]) -> dict[Ref, Doc]:
    """The recorded instance's stored documents; ``changes`` merged into some
    (``projects_1={...}``)."""
    found = dict(crawl_docs())
    for ref, change in changes.items():
        table, obj_id = ref.rsplit("_", 1)
        found[(table, int(obj_id))] = found[(table, int(obj_id))] | change
    return found


def first(resource: str) -> Doc:
    table = RESOURCES[resource].table
    return crawl_docs()[min(ref for ref in crawl_docs() if ref[0] == table)]


def render(resource: str, doc: Doc, version: str | None = "1.4", **options: Any) -> Any:
    """``doc`` as a list item (``detail=True``: a detail) of ``version``."""
    stored = options.pop("stored", None) or crawl_docs()
    detail = options.pop("detail", False)
    ctx = Context(options.pop("origin", ORIGIN), version, effective_version(version), **options)
    return renderer(resource, ctx.effective, detail)(doc, Embeds(stored), ctx)


def render_embedded(resource: str, obj_id: int, version: str) -> Any:
    doc = crawl_docs()[(RESOURCES[resource].table, obj_id)]
    return embedded_renderer(resource, version)(doc, Embeds({}), Context(ORIGIN, version, version))


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("resource", sorted(FIELDS))
def test_each_version_shows_the_fields_it_introduced(resource: str, version: str) -> None:
    # (A project showing dependencies: series show them only then.)
    stored = docs(projects_1={"show_dependencies": True})
    doc = first(resource)
    expected = shown(FIELDS[resource], SINCE.get(resource, {}), version)
    assert list(render(resource, doc, version, stored=stored)) == expected
    detail = render(resource, doc, version, stored=stored, detail=True)
    assert list(detail) == expected + DETAIL_ONLY.get(resource, "").split()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("resource", sorted(EMBEDDED))
def test_embedded_objects_show_their_compact_shape_of_each_version(
    resource: str, version: str
) -> None:
    rendered = render_embedded(resource, first(resource)["id"], version)
    assert list(rendered) == shown(EMBEDDED[resource], EMBEDDED_SINCE.get(resource, {}), version)


def test_urls_point_at_the_callers_origin_and_version() -> None:
    patch = render("patches", first("patches"), "1.2")
    assert patch["url"] == f"{ORIGIN}/api/1.2/patches/1/"
    assert patch["web_url"] == f"{ORIGIN}/project/patchwork/patch/{patch['msgid'][1:-1]}/"
    assert patch["mbox"] == patch["web_url"] + "mbox/"
    assert patch["project"]["url"] == f"{ORIGIN}/api/1.2/projects/1/"
    assert patch["series"][0]["mbox"] == f"{ORIGIN}/series/1/mbox/"
    # Sub-lists are linked unversioned, as Patchwork's reverse() links them.
    assert patch["comments"] == f"{ORIGIN}/api/patches/1/comments/"
    assert patch["checks"] == f"{ORIGIN}/api/patches/1/checks/"
    check = render("checks", first("checks"), None)
    assert check["url"] == f"{ORIGIN}/api/patches/7/checks/1/"
    # Values that are other sites' URLs are left alone.
    assert patch["list_archive_url"].startswith("https://lore.kernel.org/")


def test_the_version_segment_is_kept_as_requested() -> None:
    """``/api/1x4/`` is 1.4 to Patchwork (it compares the split strings)."""
    patch = render("patches", first("patches"), "1x4")
    assert patch["url"] == f"{ORIGIN}/api/1x4/patches/1/"
    assert "related" in patch
    assert effective_version(None) == effective_version("9.9") == "1.4"
    assert effective_version("1.1") == "1.1"


def test_a_format_parameter_is_carried_by_the_urls_drf_builds() -> None:
    stored = docs(projects_1={"show_dependencies": True}, series_1={"dependencies": [2]})
    series = render("series", stored[("series", 1)], "1.4", suffix="?format=json", stored=stored)
    assert series["url"] == f"{ORIGIN}/api/1.4/series/1/?format=json"
    assert series["dependencies"] == [f"{ORIGIN}/api/1.4/series/2/?format=json"]
    assert series["web_url"] == f"{ORIGIN}/project/patchwork/list/?series=1"
    assert series["patches"][0]["url"] == f"{ORIGIN}/api/1.4/patches/1/?format=json"
    patch = render("patches", first("patches"), suffix="?format=json")
    assert patch["comments"] == f"{ORIGIN}/api/patches/1/comments/"


def test_embedded_objects_are_read_from_their_own_rows() -> None:
    stored = docs(projects_1={"name": "Renamed"}, people_1={"email": "new@example.org"})
    patch = render("patches", first("patches"), stored=stored)
    assert patch["project"]["name"] == "Renamed"
    assert patch["submitter"]["email"] == "new@example.org"


def test_embedded_objects_not_mirrored_are_null_or_left_out() -> None:
    stored = dict(crawl_docs())
    del stored[("people", 1)], stored[("patches", 3)]
    patch = render("patches", first("patches"), stored=stored)
    assert patch["submitter"] is None
    assert [p["id"] for p in patch["related"]] == [2, 4]


def test_an_events_payload_embeds_what_its_category_names() -> None:
    events = {e: crawl_docs()[("events", e)] for e in (2740, 2747, 2769)}
    check = render("events", events[2740], "1.3")["payload"]
    assert list(check) == ["patch", "check"]
    assert check["check"]["url"] == f"{ORIGIN}/api/1.3/patches/746/checks/80/"
    assert render("events", events[2747], "1.0")["payload"] == {
        "patch": render_embedded("patches", 764, "1.0"),
        "previous_state": "new",
        "current_state": "deferred",
    }
    comment = render("events", events[2769], "1.3")["payload"]["comment"]
    assert comment["url"] == f"{ORIGIN}/api/1.3/patches/666/comments/177/"


def test_series_dependencies_show_only_while_the_projects_flag_is_set() -> None:
    """Patchwork drops the fields from the serializer a list shares: once an
    item's project lacks the flag, no later item shows them."""
    stored = docs(projects_1={"show_dependencies": True})
    ctx = Context(ORIGIN, "1.4", "1.4")
    render_series = renderer("series", "1.4", False)
    flagged = crawl_docs()[("series", 1)]
    unflagged = next(d for (t, _), d in stored.items() if t == "series" and d["project"] != 1)
    shared = Embeds(stored)
    items = [render_series(doc, shared, ctx) for doc in (flagged, unflagged, flagged)]
    assert ["dependencies" in item for item in items] == [True, False, False]
    assert "dependencies" in render_series(flagged, Embeds(stored), ctx)


def _answers(instance: str, version: str | None) -> Iterator[tuple[str, ApiPath, Any]]:
    """Recorded 200s to reads of ``version`` that the mirror answers: every
    anonymous one, and those of people and users (any identity may read)."""
    for path in INSTANCES[instance][1]:
        for record in records(path):
            asked = api_path(record["path"])
            if asked is None or asked.version != version or record["status"] != 200:
                continue
            public = record["auth"] is None and not record.get("request_headers")
            listed = asked.resource == "people" or (asked.resource, asked.obj_id) == ("users", None)
            if record["method"] == "GET" and (public or listed):
                yield record["path"], asked, record["body"]


@pytest.mark.parametrize("version", [*VERSIONS, None], ids=[*VERSIONS, "unversioned"])
@pytest.mark.parametrize("instance", sorted(INSTANCES))
def test_every_recorded_object_renders_as_recorded(instance: str, version: str | None) -> None:
    """Each object of each recorded answer, rendered from what the crawl of
    its instance stored, for the recorded origin: the same JSON."""
    stored = crawl_docs(INSTANCES[instance][0])
    wrong: list[str] = []
    seen: set[str] = set()
    for path, asked, body in _answers(instance, version):
        formats = [v for k, v in parse_qsl(asked.query) if k == "format"]
        suffix = "?" + urlencode({"format": formats[-1]}) if formats else ""
        ctx = Context(PLACEHOLDER, version, effective_version(version), suffix)
        detail = asked.obj_id is not None
        render_one = renderer(asked.resource, ctx.effective, detail)
        embeds = Embeds(stored)  # (one per answer, as the gateway's)
        table = RESOURCES[asked.resource].table
        for item in [body] if detail else body:
            got = render_one(stored[(table, item["id"])], embeds, ctx)
            if json.dumps(got) != json.dumps(item):
                wrong.append(f"{path} #{item['id']}")
        seen.add(f"{asked.resource} {'detail' if detail else 'list'}")
    assert wrong == []
    lists = {"projects", "patches", "covers", "series", "events", "bundles", "checks"}
    if instance == "recorded":
        lists.add("people")  # (the other instance's were recorded anonymously)
    if version != "1.0":
        lists |= {"patch_comments", "cover_comments"}
    assert {f"{name} list" for name in lists} <= seen
    assert {"patches detail", "series detail", "projects detail"} <= seen
