"""Upstream JSON into stored documents (sync.normalize): no API URL and no
upstream origin stored, site URLs as paths, embedded objects by id in their
own tables, and anything malformed refused before it reaches the mirror."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from mirror.store import Batch
from sync import normalize
from sync.normalize import BadUpstreamData, Normalizer
from sync.recorded import PLACEHOLDER
from tests.support import CRAWL, OTHER_CRAWL
from tests.unit.recorded import crawl_batch, records


def recorded(path: str) -> Any:
    """What the recorded instance answered the crawl's GET of ``path``."""
    for record in records(CRAWL):
        if record["path"] == path:
            return copy.deepcopy(record["body"])
    raise LookupError(path)


def normalised(
    resource: str, obj: Any, base: str = PLACEHOLDER, parent_id: int | None = None
) -> Batch:
    batch = Batch()
    Normalizer(base).add(resource, obj, batch, parent_id=parent_id)
    return batch


def test_a_patch_keeps_its_values_site_paths_and_the_ids_of_what_it_embeds() -> None:
    doc = normalised("patches", recorded("/api/1.4/patches/1/")).docs["patches"][1]
    msgid = "1219282687.502373-patch1@ozlabs.org"
    assert doc["web_url"] == f"/project/patchwork/patch/{msgid}/"
    assert doc["mbox"] == f"/project/patchwork/patch/{msgid}/mbox/"
    assert (doc["project"], doc["submitter"], doc["delegate"]) == (1, 1, None)
    assert (doc["series"], doc["related"]) == ([1], [2, 3, 4])
    assert (doc["msgid"], doc["state"], doc["archived"]) == (f"<{msgid}>", "new", False)
    assert {"headers", "content", "diff", "prefixes"} <= set(doc)
    # API URLs are derived from ids when rendering, for the caller's origin.
    assert not {"url", "comments", "checks"} & set(doc)


def test_embedded_objects_go_to_their_own_tables_in_their_embedded_shape() -> None:
    batch = normalised("patches", recorded("/api/1.4/patches/1/"))
    project = batch.docs["projects"][1]
    assert project["link_name"] == "patchwork"
    assert "maintainers" not in project  # (not in a patch's embedded project)
    assert batch.docs["people"][1] == {"id": 1, "name": "Jeremy Kerr", "email": "jk@ozlabs.org"}
    assert batch.docs["series"][1]["web_url"] == "/project/patchwork/list/?series=1"
    assert set(batch.docs["patches"]) == {1, 2, 3, 4}  # itself, and those related


def test_an_embedded_copy_leaves_what_the_full_object_said() -> None:
    batch = normalised("projects", recorded("/api/1.4/projects/1/"))
    Normalizer(PLACEHOLDER).add("patches", recorded("/api/1.4/patches/1/"), batch)
    project = batch.docs["projects"][1]
    assert [m["username"] for m in project["maintainers"]] == ["admin", "stephen", "cibot"]
    assert project["show_dependencies"] is False


def test_project_maintainers_are_copied_inline_without_their_urls() -> None:
    batch = normalised("projects", recorded("/api/1.4/projects/1/"))
    (first, *_) = batch.docs["projects"][1]["maintainers"]
    assert first == {
        "id": 1,
        "username": "admin",
        "first_name": "Admin",
        "last_name": "Tester",
        "email": "admin@example.com",
    }
    assert "users" not in batch.docs  # (a maintainer is a profile, not a user row)


def test_a_check_takes_its_patch_from_its_url_and_a_comment_from_its_list() -> None:
    check = normalised("checks", recorded("/api/1.4/patches/7/checks/1/")).docs["checks"][1]
    assert (check["patch"], check["user"], check["state"]) == (7, 2, "warning")
    comment = recorded("/api/1.4/patches/2/comments/7/")
    del comment["url"]  # (as before API 1.3)
    stored = normalised("patch_comments", comment, parent_id=2).docs["patch_comments"][7]
    assert stored["patch"] == 2
    assert stored["web_url"] == "/comment/7/"


def test_an_upstream_under_a_path_stores_paths_below_it() -> None:
    patch = orjson.loads(
        orjson.dumps(recorded("/api/1.4/patches/1/")).replace(
            PLACEHOLDER.encode(), b"https://example.org/patchwork"
        )
    )
    batch = normalised("patches", patch, base="https://example.org/patchwork/")
    assert batch.docs["patches"][1]["web_url"].startswith("/project/patchwork/patch/")
    assert batch.docs["series"][1]["mbox"] == "/series/1/mbox/"


def test_an_events_payload_keeps_what_its_category_shows() -> None:
    events = {e["id"]: e for e in recorded("/api/1.4/events/?page=1&per_page=250")}
    stored = crawl_batch().docs["events"]
    assert stored[2740] | {"date": None} == {
        "id": 2740,
        "category": "check-created",
        "project": 2,
        "date": None,
        "actor": 3,
        "patch": 746,
        "created_check": 80,
    }
    assert stored[2747]["previous_state"] == "new"
    assert stored[2747]["current_state"] == "deferred"
    assert stored[2769]["patch_comment"] == 177
    # A key the category does not show is not kept.
    event = copy.deepcopy(events[2747])
    event["payload"]["series"] = event["payload"]["patch"]
    assert "series" not in normalised("events", event).docs["events"][2747]


def test_series_dependencies_are_stored_as_ids() -> None:
    series = recorded("/api/1.4/series/1/")
    series["dependencies"] = [f"{PLACEHOLDER}/api/1.4/series/7/", f"{PLACEHOLDER}/api/series/9/"]
    series["dependents"] = []
    doc = normalised("series", series).docs["series"][1]
    assert (doc["dependencies"], doc["dependents"]) == ([7, 9], [])


@pytest.mark.parametrize("crawl", [CRAWL, OTHER_CRAWL], ids=["recorded", "other"])
def test_no_stored_document_names_the_upstream(crawl: Path) -> None:
    """Every recorded object normalises, and nothing stored holds upstream's
    origin: any origin can be rendered from it."""
    batch = crawl_batch(crawl)
    assert len(batch) > 900
    for docs in batch.docs.values():
        for doc in docs.values():
            assert PLACEHOLDER.encode() not in orjson.dumps(doc), doc


def _patch(**changes: Any) -> dict[str, Any]:
    patch = recorded("/api/1.4/patches/1/")
    patch.update(changes)
    return {k: v for k, v in patch.items() if v is not ...}


@pytest.mark.parametrize(
    ("resource", "obj"),
    [
        ("patches", [1]),
        ("patches", _patch(id="1")),
        ("patches", _patch(id=True)),
        ("patches", _patch(id=-1)),
        ("patches", _patch(id=2**63)),
        ("patches", _patch(id=...)),
        ("patches", _patch(url=f"{PLACEHOLDER}/api/1.4/patches/2/")),
        ("patches", _patch(url=f"{PLACEHOLDER}/api/1.4/covers/1/")),
        ("patches", _patch(url=None)),
        ("patches", _patch(web_url=5)),
        ("patches", _patch(web_url="project/patchwork/patch/1/")),
        ("patches", _patch(submitter="jk@ozlabs.org")),
        ("patches", _patch(series={"id": 1})),
        ("patches", _patch(tags={"a": {"b": {"c": {"d": {"e": 1}}}}})),
        ("patches", _patch(name=object())),
        ("series", recorded("/api/1.4/series/1/") | {"dependencies": ["/api/1.4/patches/3/"]}),
        ("events", recorded("/api/1.4/events/?page=1&per_page=250")[0] | {"payload": []}),
    ],
    ids=[
        "not-an-object",
        "id-a-string",
        "id-a-bool",
        "id-negative",
        "id-too-large",
        "no-id",
        "url-of-another-id",
        "url-of-another-resource",
        "url-null",
        "site-url-a-number",
        "site-url-relative",
        "embedded-not-an-object",
        "list-not-a-list",
        "value-too-deep",
        "value-not-json",
        "dependency-not-a-series",
        "payload-not-an-object",
    ],
)
def test_malformed_objects_are_refused(resource: str, obj: Any) -> None:
    with pytest.raises(BadUpstreamData):
        normalised(resource, obj)


def test_strings_beyond_the_bound_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(normalize, "MAX_STRING", 100)
    user = recorded("/api/1.4/users/1/")
    assert normalised("users", user | {"last_name": "x" * 100}).docs["users"][1]["last_name"]
    with pytest.raises(BadUpstreamData):
        normalised("users", user | {"last_name": "x" * 101})
