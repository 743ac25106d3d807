"""The fake Patchwork upstream: faithful reads, and changes as Patchwork makes them.

Faithfulness is checked against recordings of real Patchwork 3.x: every
API read of the crawl, the recorded answers to filtered, ordered and odd
queries at every API version (by every recorded identity at 1.0 to 1.3),
every recorded download, a second instance's crawl, and the events and
objects real Patchwork showed after the recorded writes (replayed here
through the fake's mutation methods).
"""

from __future__ import annotations

import datetime as dt
import functools
import http.client
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from sync.recorded import PLACEHOLDER, read_records
from tests.fake import CIBOT, CRAWL, FakePatchwork
from tests.support import (
    CONFORMANCE,
    FIXTURES,
    OTHER_CASES,
    OTHER_CRAWL,
    ThreadedServer,
    auth_header,
    tokens,
    with_recorded_identities,
)
from tests.test_fake_writes import hidden_bundles

#: Where the crawl's events end: anything later was made after it.
CRAWL_END = "2026-11-24T01:19:46.581483"
TOKEN = {"Authorization": "Token 0123456789abcdef0123456789abcdef01234567"}


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    def ids(self) -> list[int]:
        return [item["id"] for item in self.json]


class Client:
    """A keep-alive HTTP client for one server (thousands of requests)."""

    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        self._conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)

    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> Answer:
        self._conn.request(method, path, headers=headers or {})
        resp = self._conn.getresponse()
        return Answer(resp.status, resp.headers, resp.read())

    def api(self, path: str, auth: bool = True) -> Answer:
        return self.get(f"/api/1.4/{path}", TOKEN if auth else {})

    def close(self) -> None:
        self._conn.close()


@pytest.fixture(scope="module")
def crawl_records() -> list[dict[str, Any]]:
    return list(read_records(CRAWL))


@pytest.fixture
def fake(crawl_records: list[dict[str, Any]]) -> FakePatchwork:
    return FakePatchwork.from_records(crawl_records)


@pytest.fixture
def client(fake: FakePatchwork) -> Iterator[Client]:
    """The fake served over HTTP on 127.0.0.1, as a sync would reach it."""
    with ThreadedServer(fake.app()) as server:
        client = Client(server.url)
        yield client
        client.close()


def drf_json(data: Any) -> bytes:
    """What DRF's JSONRenderer sends for ``data``: compact UTF-8."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def expected(record: dict[str, Any], origin: str) -> tuple[Any, str | None]:
    """The recorded body and Link, with the fake's origin for the recorded one."""
    body = json.loads(json.dumps(record["body"]).replace(PLACEHOLDER, origin))
    return body, expected_link(record, origin)


def expected_link(record: dict[str, Any], origin: str) -> str | None:
    link = record["headers"].get("Link")
    return link.replace(PLACEHOLDER, origin) if link else None


def expected_raw(record: dict[str, Any], origin: str) -> bytes:
    """The recorded body as DRF sent it (the origin needs no JSON escaping)."""
    return drf_json(record["body"]).replace(PLACEHOLDER.encode(), origin.encode())


#: API 1.4 or unversioned.
LATEST = re.compile(r"/api/(1\.4/|$|(projects|people|users|patches|covers|series|bundles|events)/)")
#: The older versions, whose reads show fewer fields, routes and filters.
OLDER = re.compile(r"/api/1\.[0-3](/|$)")


# ----------------------------------------------------------------------
# Faithful reads


def test_serves_every_recorded_read_byte_for_byte(
    crawl_records: list[dict[str, Any]], client: Client
) -> None:
    reads = [r for r in crawl_records if r["path"].startswith("/api/")]
    assert len(reads) > 3000
    for record in reads:
        answer = client.get(record["path"], TOKEN)
        assert answer.status == record["status"], record["path"]
        assert answer.raw == expected_raw(record, client.url), record["path"]
        assert answer.headers.get("Link") == expected_link(record, client.url), record["path"]
        assert answer.headers["Allow"] == record["headers"]["Allow"], record["path"]
        assert answer.headers["Content-Type"] == "application/json", record["path"]


def test_check_field_follows_patchworks_rule(fake: FakePatchwork) -> None:
    """Recomputed from the checks alone, every recorded ``check`` agrees."""
    checks: dict[int, list[dict[str, Any]]] = {}
    for cid in fake.ids("checks"):
        check = fake.render("checks", cid)
        patch_id = int(check["url"].split("/")[-4])
        checks.setdefault(patch_id, []).append(check)
    assert checks, "the crawl has checks"
    states = set()
    for patch_id in fake.ids("patches"):
        latest: dict[tuple[int, str], dict[str, Any]] = {}
        for check in checks.get(patch_id, []):
            key = (check["user"]["id"], check["context"])
            if key not in latest or latest[key]["date"] <= check["date"]:
                latest[key] = check
        found = {c["state"] for c in latest.values()}
        rule = next((s for s in ("fail", "warning", "pending") if s in found), "success")
        want = rule if found else "pending"
        assert fake.render("patches", patch_id)["check"] == want
        states.add(want)
    assert {"pending", "success", "warning", "fail"} <= states


def recorded_cases(
    *names: str,
    versions: re.Pattern[str] = LATEST,
    identities: tuple[str | None, ...] = (None, "cibot"),
) -> Iterator[dict[str, Any]]:
    """Recorded GETs at ``versions`` by ``identities`` (empty: every one).

    Left out: cases sent with headers of their own (``Accept``
    negotiation and the browsable API, which the fake does not serve).
    """
    for name in names:
        for record in read_records(FIXTURES / f"{name}.jsonl.xz"):
            if (
                record["method"] == "GET"
                and (not identities or record.get("auth") in identities)
                and not record.get("request_headers")
                and versions.match(record["path"])
            ):
                yield record


def compare_case(
    client: Client,
    record: dict[str, Any],
    strict_order: bool = True,
    headers: dict[str, str] | None = None,
) -> None:
    """``headers``: the request's (default: any token for an identified case)."""
    if headers is None:
        headers = TOKEN if record.get("auth") else {}
    answer = client.get(record["path"], headers)
    path = record["path"]
    assert answer.status == record["status"], path
    if isinstance(record["body"], str):
        if answer.status == 500:
            assert answer.raw.decode() == record["body"], path
        return
    assert answer.headers.get("Link") == expected_link(record, client.url), path
    if strict_order or not isinstance(record["body"], list):
        assert answer.raw == expected_raw(record, client.url), path
    else:
        assert len(answer.json) == len(record["body"]), path


def test_answers_queries_as_patchwork_did(client: Client) -> None:
    """Recorded answers of real Patchwork to filters in every accepted form,
    searches, orderings, odd pages, ``format``, 404s and its 500s."""
    count = 0
    for record in recorded_cases("generated", "conformance", "extra"):
        compare_case(client, record)
        count += 1
    assert count > 1300


def unique_order(record: dict[str, Any]) -> bool:
    """Whether a case's ordering leaves no ties.  Ties of other orderings
    follow SQLite's query plans, which the fake models in the common cases
    only: those are compared as counts."""
    query = parse_qs(urlsplit(record["path"]).query)
    return query.get("order", ["id"])[-1].lstrip("-") in ("id", "")


@functools.cache
def recorded_bundle_orders() -> dict[str, list[int]]:
    """Bundle mbox path -> the patch ids of a recorded download, in order."""
    orders = {}
    for record in read_records(CONFORMANCE):
        if record["path"].startswith("/bundle/") and record["status"] == 200 and record["body"]:
            ids = re.findall(r"^X-Patchwork-Id: (\d+)$", record["body"], re.M)
            orders[record["path"]] = [int(i) for i in ids]
    return orders


@pytest.fixture
def everyone(crawl_records: list[dict[str, Any]]) -> Iterator[Client]:
    """The fake as every recorded identity saw real Patchwork: the recorded
    tokens and passwords name their users, other users' private bundles
    (which the crawl's identity cannot see) come from the conformance
    cases, in the order their recorded mboxes show, and unknown paths get
    the recorded 404 page."""
    fake = with_recorded_identities(FakePatchwork.from_records(crawl_records))
    for bundle in hidden_bundles(fake):
        fake.add_recorded("bundles", bundle)
        owner = bundle["owner"]["username"]
        order = recorded_bundle_orders().get(f"/bundle/{owner}/{bundle['name']}/mbox/")
        if order is not None:
            fake.update("bundles", bundle["id"], patches=order)
    with ThreadedServer(fake.app()) as server:
        client = Client(server.url)
        yield client
        client.close()


def test_older_versions_as_patchwork_served_them(everyone: Client) -> None:
    """Reads at API 1.0 to 1.3: each version's fields (details and embedded
    objects), routes (comments from 1.1, comment details from 1.3), events
    (comment events from 1.3) and filters (``hash`` and ``msgid`` of patches
    and ``actor`` of events ignored below 1.2), as real Patchwork answered
    every recorded identity (tokens, passwords, bad credentials, none)."""
    count = 0
    for record in recorded_cases("conformance", versions=OLDER, identities=()):
        compare_case(everyone, record, headers=auth_header(record.get("auth")))
        count += 1
    assert count > 1000
    for record in recorded_cases("generated", "extra", versions=OLDER, identities=(None,)):
        compare_case(everyone, record, strict_order=unique_order(record), headers={})
        count += 1
    assert count > 2500


def test_downloads_as_patchwork_built_them(
    crawl_records: list[dict[str, Any]], everyone: Client
) -> None:
    """Every recorded patch, cover, series and bundle mbox and raw diff
    (``?series=`` dependencies, private bundles by owner and by others, bad
    credentials), the old-style ``/patch/N/mbox/`` redirects, slashless
    paths and missing objects, byte for byte with their headers."""
    downloads = [r for r in crawl_records if r["family"].startswith("crawl.mbox.")]
    downloads += [
        r
        for r in read_records(CONFORMANCE)
        if not r["path"].startswith("/api") and r["method"] in ("GET", "HEAD")
    ]
    assert len(downloads) > 1300
    for record in downloads:
        auth = record.get("auth") or ("cibot" if record["family"].startswith("crawl.") else None)
        answer = everyone.get(record["path"], auth_header(auth), method=record["method"])
        path = record["path"]
        assert answer.status == record["status"], (path, auth)
        for name in ("Content-Type", "Content-Disposition", "Location"):
            assert answer.headers.get(name) == record["headers"].get(name), (path, name)
        assert answer.raw.decode() == record["body"], (path, auth)


def test_second_instance_with_its_own_states() -> None:
    """Another instance: its own states, dependencies shown for one project,
    a crawl identity that is not user 4."""
    fake = FakePatchwork.from_crawl(OTHER_CRAWL)
    assert [s.slug for s in fake.states][-2:] == ["queued", "needs-ack"]
    assert fake.identity != CIBOT
    with ThreadedServer(fake.app()) as server:
        client = Client(server.url)
        for record in read_records(OTHER_CRAWL):
            if record["path"].startswith("/api/") and record["status"] == 200:
                compare_case(client, record)
        name = OTHER_CASES.name.removesuffix(".jsonl.xz")
        for record in recorded_cases(name, versions=re.compile("/api/")):
            compare_case(client, record, strict_order=unique_order(record))
        client.close()


def test_permissions_of_anonymous_callers(client: Client) -> None:
    for path in ("people/", "users/", "people/1/", "users/1/"):
        answer = client.api(path, auth=False)
        assert answer.status == 403
        assert answer.json == {"detail": "Authentication credentials were not provided."}
    public = client.api("bundles/?per_page=250", auth=False).ids()
    everything = client.api("bundles/?per_page=250").ids()
    assert set(public) < set(everything)
    private = sorted(set(everything) - set(public))
    assert client.api(f"bundles/{private[0]}/", auth=False).status == 404
    assert client.api(f"bundles/{private[0]}/").status == 200
    assert client.api("people/1/").status == 200


def test_tokens_name_users(fake: FakePatchwork, client: Client) -> None:
    known = tokens()
    users = {fake.render("users", i)["username"]: i for i in fake.ids("users")}
    fake.tokens = {token: users[name] for name, token in known.items()}
    stephen = {"Authorization": f"Token {known['stephen']}"}
    assert "settings" in client.get("/api/1.4/users/2/", stephen).json
    assert "settings" not in client.get("/api/1.4/users/4/", stephen).json
    assert client.get("/api/1.4/patches/", TOKEN).json == {"detail": "Invalid token."}
    assert client.get("/api/1.4/patches/", auth_header("basic:stephen")).status == 200


def test_unknown_paths_errors_and_redirects(client: Client) -> None:
    probe = "/api/1.4/patchwork-gateway-404-probe/"
    answer = client.get(probe)
    assert answer.status == 404
    assert f"<code>{probe}</code>" in answer.raw.decode()
    assert answer.headers["Content-Type"].startswith("text/html")
    for path in (
        "/api/1.5/patches/",
        "/api/1.0/patches/1/comments/",  # comments came with 1.1
        "/api/1.2/patches/2/comments/7/",  # comment details with 1.3
        "/api/1.4/patches/abc/",
        "/project/patchwork/list/",
    ):
        assert client.get(path).status == 404, path
    assert client.get("/api/1.3/patches/2/comments/7/").status == 200
    assert client.api("patches/999999/").json == {"detail": "No Patch matches the given query."}
    assert client.api("patches/1/comments/999/").json == {
        "detail": "No PatchComment matches the given query."
    }
    assert client.api("covers/999999/comments/").json == {
        "detail": "No Cover matches the given query."
    }
    assert client.api("projects/patchwork/").json["id"] == 1
    for page in ("0", "99", "x", "1.0"):
        answer = client.api(f"patches/?page={page}")
        assert (answer.status, answer.json) == (404, {"detail": "Invalid page."})
    assert client.api("patches/?page=last&per_page=250").ids()[-1] == 767
    redirect = client.get("/api/1.4/patches?state=new")
    assert (redirect.status, redirect.headers["Location"]) == (301, "/api/1.4/patches/?state=new")
    assert client.get("/api/1.4/patches/", method="POST").status == 405
    head = client.get("/api/1.4/patches/1/", method="HEAD")
    assert (head.status, head.raw) == (200, b"")
    assert client.api("patches/?format=xml").json == {"detail": "Not found."}
    unversioned = client.get("/api/patches/1/").json
    assert unversioned["url"] == f"{client.url}/api/patches/1/"


# ----------------------------------------------------------------------
# Changes and their events


def events_since(client: Client, date: str) -> list[dict[str, Any]]:
    """Events after ``date`` (``since`` also takes those at ``date``)."""
    after = dt.datetime.fromisoformat(date)
    events = client.api(f"events/?since={date}&per_page=250").json
    return [e for e in events if dt.datetime.fromisoformat(e["date"]) > after]


def summary(events: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Events as (category, payload ids), oldest first."""

    def ident(value: Any) -> Any:
        return value["id"] if isinstance(value, dict) else value

    return [(e["category"], {k: ident(v) for k, v in e["payload"].items()}) for e in events][::-1]


def test_new_series_with_a_cover(fake: FakePatchwork, client: Client) -> None:
    start = fake.now.isoformat()
    made = fake.new_series(2, ("Ada Lovelace", "ada@example.org"), n_patches=3, name="Engine")
    series, cover, patches = made["series"], made["cover"], made["patches"]
    assert (series, cover, patches) == (278, 146, [768, 769, 770])
    events = events_since(client, start)
    assert summary(events) == [
        ("series-created", {"series": series}),
        ("cover-created", {"cover": cover}),
        ("patch-created", {"patch": 768}),
        ("patch-completed", {"patch": 768, "series": series}),
        ("patch-created", {"patch": 769}),
        ("patch-completed", {"patch": 769, "series": series}),
        ("patch-created", {"patch": 770}),
        ("patch-completed", {"patch": 770, "series": series}),
        ("series-completed", {"series": series}),
    ]
    assert [e["id"] for e in events] == made["events"][::-1] == list(range(2778, 2769, -1))
    dates = [e["date"] for e in events]
    assert dates == sorted(dates, reverse=True) and dates[-1] > start
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?", d) for d in dates)
    ascending = client.api(f"events/?since={start}&order=date").ids()
    assert ascending == [2769, *made["events"]]  # since: the date itself included
    assert all(e["project"]["id"] == 2 and e["actor"] is None for e in events)

    detail = client.api(f"series/{series}/").json
    assert detail["name"] == "Engine" and detail["version"] == 1
    assert (detail["total"], detail["received_total"], detail["received_all"]) == (3, 3, True)
    assert detail["cover_letter"]["id"] == cover
    assert [p["id"] for p in detail["patches"]] == patches
    assert detail["web_url"] == f"{client.url}/project/aiohttp/list/?series={series}"
    patch = client.api("patches/769/").json
    assert patch["name"] == "[2/3] Engine (part 2)" and patch["prefixes"] == ["2/3"]
    assert patch["state"] == "new" and patch["check"] == "pending" and patch["related"] == []
    assert patch["series"] == [{k: detail[k] for k in patch["series"][0]}]
    assert patch["submitter"]["name"] == "Ada Lovelace"
    assert patch["list_archive_url"] is None  # aiohttp has no archive format
    assert patch["web_url"].endswith(patch["msgid"].strip("<>") + "/")
    assert client.api(f"covers/{cover}/").json["series"][0]["id"] == series
    assert client.api(f"people/{made['submitter']}/").json["email"] == "ada@example.org"
    # Pagination after growth: the new patches end the last page.
    last = client.api("patches/?page=4&per_page=250")
    assert last.ids()[-3:] == patches and len(last.ids()) == 20
    assert 'rel="next"' not in last.headers["Link"]
    assert (
        client.api("patches/?page=3&per_page=250")
        .headers["Link"]
        .startswith(f'<{client.url}/api/1.4/patches/?page=4&per_page=250>; rel="next"')
    )
    assert client.api(f"events/?series={series}").ids() == [2778, 2777, 2775, 2773, 2770]


def test_new_series_without_cover(fake: FakePatchwork, client: Client) -> None:
    start = fake.now.isoformat()
    made = fake.new_series(1, 1, n_patches=2, cover=False, version=2)
    first, second = made["patches"]
    assert made["cover"] is None
    assert summary(events_since(client, start)) == [
        ("patch-created", {"patch": first}),
        ("series-created", {"series": made["series"]}),
        ("patch-completed", {"patch": first, "series": made["series"]}),
        ("patch-created", {"patch": second}),
        ("patch-completed", {"patch": second, "series": made["series"]}),
        ("series-completed", {"series": made["series"]}),
    ]
    series = client.api(f"series/{made['series']}/").json
    assert series["cover_letter"] is None
    assert series["name"] == "[v2,1/2] Fake change 278 (part 1)"
    patch = client.api(f"patches/{first}/").json
    assert patch["prefixes"] == ["v2", "1/2"]
    assert patch["list_archive_url"] == (
        "https://lore.kernel.org/patchwork/" + patch["msgid"].strip("<>")
    )


def test_incomplete_series_completes_later(fake: FakePatchwork, client: Client) -> None:
    start = fake.now.isoformat()
    made = fake.new_series(1, 2, n_patches=2, total=3)
    series_id = made["series"]
    categories = [c for c, _ in summary(events_since(client, start))]
    assert "series-completed" not in categories
    assert client.api(f"series/{series_id}/").json["received_all"] is False
    middle = fake.now.isoformat()
    third = fake.add_series_patch(series_id)
    assert summary(events_since(client, middle)) == [
        ("patch-created", {"patch": third}),
        ("patch-completed", {"patch": third, "series": series_id}),
        ("series-completed", {"series": series_id}),
    ]
    assert client.api(f"series/{series_id}/").json["received_all"] is True


def test_comments(fake: FakePatchwork, client: Client) -> None:
    start = fake.now.isoformat()
    patch_comment = fake.add_patch_comment(2, 6)
    cover_comment = fake.add_cover_comment(3)
    assert (patch_comment, cover_comment) == (208, 61)  # two id sequences
    assert summary(events_since(client, start)) == [
        ("patch-comment-created", {"patch": 2, "comment": patch_comment}),
        ("cover-comment-created", {"cover": 3, "comment": cover_comment}),
    ]
    listed = client.api("patches/2/comments/").json
    assert listed[-1]["id"] == patch_comment
    assert listed[-1]["web_url"] == f"{client.url}/comment/{patch_comment}/"
    assert listed[-1]["subject"] == "Re: [PATCH 1/2] Fix invalid border style"
    assert listed[-1]["addressed"] is None
    detail = client.api(f"covers/3/comments/{cover_comment}/").json
    assert detail["url"] == f"{client.url}/api/1.4/covers/3/comments/{cover_comment}/"
    middle = fake.now.isoformat()
    fake.set_comment_addressed("patch", patch_comment, True)
    assert summary(events_since(client, middle)) == [
        ("patch-comment-created", {"patch": 2, "comment": patch_comment})
    ]
    assert client.api(f"patches/2/comments/{patch_comment}/").json["addressed"] is True


def test_checks_and_the_combined_state(fake: FakePatchwork, client: Client) -> None:
    def check_of(patch_id: int) -> str:
        return str(client.api(f"patches/{patch_id}/").json["check"])

    start = fake.now.isoformat()
    assert check_of(2) == "pending"
    first = fake.add_check(2, 4, "success", "build", "https://ci.example.org/1", "ok")
    assert check_of(2) == "success"
    fake.add_check(2, 4, "warning", "lint")
    assert check_of(2) == "warning"
    fake.add_check(2, 4, "success", "lint")  # a recheck replaces the older result
    assert check_of(2) == "success"
    fake.add_check(2, 2, "pending", "build")  # another user's context
    assert check_of(2) == "pending"
    fake.add_check(2, 2, "fail", "build")
    assert check_of(2) == "fail"
    events = events_since(client, start)
    assert [e["category"] for e in events] == ["check-created"] * 5
    assert [e["actor"]["id"] for e in events] == [2, 2, 4, 4, 4]
    assert events[-1]["payload"]["check"] == {
        "id": first,
        "url": f"{client.url}/api/1.4/patches/2/checks/{first}/",
        "date": events[-1]["payload"]["check"]["date"],
        "state": "success",
        "target_url": "https://ci.example.org/1",
        "context": "build",
    }
    assert client.api("patches/2/checks/").ids() == list(range(first, first + 5))
    assert client.api(f"patches/2/checks/{first}/").json["description"] == "ok"
    assert client.api("patches/2/checks/?state=3").ids() == [first + 4]


def test_state_and_delegate_changes(fake: FakePatchwork, client: Client) -> None:
    start = fake.now.isoformat()
    fake.set_state(5, "accepted", actor_id=2)
    fake.set_state(5, "accepted", actor_id=2)  # unchanged: no event
    fake.set_delegate(5, 4, actor_id=2)
    fake.set_delegate(5, 4)  # unchanged: no event
    fake.set_delegate(5, None, actor_id=4)
    events = events_since(client, start)
    assert summary(events) == [
        ("patch-state-changed", {"patch": 5, "previous_state": "new", "current_state": "accepted"}),
        ("patch-delegated", {"patch": 5, "previous_delegate": None, "current_delegate": 4}),
        ("patch-delegated", {"patch": 5, "previous_delegate": 4, "current_delegate": None}),
    ]
    assert [e["actor"]["id"] for e in events] == [4, 2, 2]
    assert events[1]["payload"]["current_delegate"]["username"] == "cibot"
    assert client.api("patches/?state=accepted&per_page=250").ids().count(5) == 1
    assert 5 in client.api("patches/?state=3&state=new&per_page=250").ids()
    assert client.api("patches/?state=3&state=nosuch").json == []


def test_relations(fake: FakePatchwork, client: Client) -> None:
    def related(patch_id: int) -> list[int]:
        return [p["id"] for p in client.api(f"patches/{patch_id}/").json["related"]]

    free = [p for p in range(100, 200) if not fake.render("patches", p)["related"]]
    a, b, c, d, e, f, g = free[:7]
    start = fake.now.isoformat()
    fake.set_related([a, b], actor_id=2)
    assert related(a) == [b] and related(b) == [a]
    fake.set_related([c, a, b], actor_id=2)  # c joins; the others stay
    assert related(a) == [b, c]
    fake.set_related([a])  # a leaves
    assert related(a) == [] and related(b) == [c]
    fake.set_related([b])  # a relation of two is deleted: no event
    assert related(b) == [] and related(c) == []
    events = events_since(client, start)
    assert [e["payload"]["patch"]["id"] for e in events[::-1]] == [b, a, c, a]
    assert [e["actor"] and e["actor"]["id"] for e in events[::-1]] == [None, 2, 2, None]
    assert events[0]["payload"] == {
        "patch": events[0]["payload"]["patch"],
        "previous_relation": None,
        "current_relation": None,
    }
    fake.set_related([d, e])
    fake.set_related([f, g])
    with pytest.raises(ValueError):
        fake.set_related([d, f])
    # Exactly {41, h}: 42 and 43 leave (an event each), 44 leaves a relation
    # of two (silently, and so does 41), then 41 and h make a new one.
    h = free[7]
    start = fake.now.isoformat()
    fake.set_related([41, h], actor_id=4)
    assert related(41) == [h] and related(42) == related(44) == []
    moves = [(e["payload"]["patch"]["id"], e["actor"]) for e in events_since(client, start)]
    assert [(p, a and a["id"]) for p, a in moves[::-1]] == [(42, 4), (43, 4), (h, None), (41, 4)]


def test_changes_without_events(fake: FakePatchwork, client: Client) -> None:
    events = fake.ids("events")
    fake.set_archived(10, True)
    fake.set_commit_ref(10, "abc123")
    fake.set_pull_url(10, "git://example.org/x master")
    fake.rename("patches", 10, "Renamed patch")
    fake.rename("projects", 1, "Patchwork Renamed")
    fake.rename("series", 3, "Renamed series")
    fake.rename_person(1, "J. Kerr")
    fake.update("users", 4, first_name="Robot")
    fake.update("projects", 1, web_url="https://example.org/pw")
    bundle = fake.create_bundle(1, 4, "mine", [10, 11], public=False)
    fake.update("bundles", bundle, public=True, patches=[11])
    fake.link_person(2, 3)
    assert fake.ids("events") == events

    patch = client.api("patches/10/").json
    assert patch["archived"] is True and patch["commit_ref"] == "abc123"
    assert patch["name"] == "Renamed patch"
    assert patch["project"]["name"] == "Patchwork Renamed"
    assert patch["project"]["web_url"] == "https://example.org/pw"
    assert patch["submitter"]["name"] == "J. Kerr"
    assert client.api("patches/11/").json["series"][0]["name"] == "Renamed series"
    assert 10 in client.api("patches/?archived=TRUE&per_page=250").ids()
    assert 10 not in client.api("patches/?archived=false&per_page=250").ids()
    first_event = client.api("events/?per_page=250&page=12").json[-1]
    assert first_event["project"]["name"] == "Patchwork Renamed"
    assert client.api("events/?actor=4&per_page=1").json[0]["actor"]["first_name"] == "Robot"
    anonymous = client.api(f"bundles/{bundle}/", auth=False).json
    assert [p["id"] for p in anonymous["patches"]] == [11]
    assert anonymous["web_url"] == f"{client.url}/bundle/cibot/mine/"
    assert client.api("people/2/").json["user"]["username"] == "andrew"
    fake.delete_bundle(bundle)
    assert client.api(f"bundles/{bundle}/").status == 404
    assert fake.ids("events") == events
    with pytest.raises(ValueError):
        fake.update("patches", 10, state="accepted")


def test_deleting_a_patch_cascades(fake: FakePatchwork, client: Client) -> None:
    comment = fake.add_patch_comment(4, 2)
    check = fake.add_check(4, 4, "success", "build")
    fake.set_related([4, 5])
    bundle = fake.create_bundle(1, 4, "with-4", [4, 5])
    fake.delete("patches", 4)
    assert client.api("patches/4/").status == 404
    assert client.api("patches/4/comments/").status == 404
    assert comment not in fake.ids("patch-comments") and check not in fake.ids("checks")
    assert client.api("events/?patch=4").json == []  # a pk that no longer exists
    for event in fake.events():
        assert 4 not in (event["payload"].get("patch") or {}).values()
    series = client.api("series/3/").json
    assert 4 not in [p["id"] for p in series["patches"]]
    assert series["received_total"] == series["total"] - 1 and not series["received_all"]
    assert [p["id"] for p in client.api(f"bundles/{bundle}/").json["patches"]] == [5]
    assert client.api("patches/5/").json["related"] == []


def test_deleting_comments_covers_and_series(fake: FakePatchwork, client: Client) -> None:
    comment = fake.add_cover_comment(2)
    fake.delete("cover-comments", comment)
    assert client.api(f"covers/2/comments/{comment}/").status == 404
    assert all(e["payload"].get("comment", {}).get("id") != comment for e in fake.events()[:5])

    # Patchwork's Series.cover_letter cascades: the series and its patches go.
    patches = [p["id"] for p in client.api("series/3/").json["patches"]]
    fake.delete("covers", 2)
    assert client.api("covers/2/").status == 404
    assert client.api("series/3/").status == 404
    assert all(client.api(f"patches/{p}/").status == 404 for p in patches)
    assert client.api("events/?series=3").json == []

    # detach: the series stays without its cover, patches keep theirs.
    fake.delete("covers", 1, detach=True)
    assert client.api("series/2/").json["cover_letter"] is None
    fake.delete("series", 2, detach=True)
    assert client.api("patches/2/").json["series"] == []
    assert all(e["payload"].get("series", {}).get("id") != 2 for e in fake.events())
    fake.delete("series", 1)  # no detach: Patch.series cascades
    assert client.api("patches/1/").status == 404


def test_purging_old_events(fake: FakePatchwork, client: Client) -> None:
    total = len(fake.ids("events"))
    removed = fake.purge_events_before("2026-11-24T01:19:00")
    assert 0 < removed < total
    oldest = client.api("events/?order=date&per_page=1").json[0]
    assert oldest["date"] >= "2026-11-24T01:19:00"
    assert client.api("events/?per_page=250&page=1").headers["Link"].count("rel=") == 3


def test_snapshot_and_render(fake: FakePatchwork) -> None:
    snapshot = fake.snapshot("http://example.org")
    assert set(snapshot) >= {"projects", "patches", "events", "checks", "cover-comments"}
    assert snapshot["patches"][1] == fake.render("patches", 1, origin="http://example.org")
    assert "settings" in snapshot["users"][CIBOT]
    assert set(snapshot["bundles"]) == {1, 3, 5, 6, 7, 9, 11, 13, 14, 15}
    assert set(fake.snapshot(viewer=None)["bundles"]) == {1, 3, 5, 7, 9, 11, 13, 15}
    assert fake.render("patches", 1, detail=False).keys() == snapshot["patches"][1].keys() - {
        "headers",
        "content",
        "diff",
        "prefixes",
    }
    assert fake.events()[0]["id"] == 2769


# ----------------------------------------------------------------------
# Real Patchwork's recorded writes, replayed through the mutation methods


#: Step -> the fake's methods making the change real Patchwork recorded.
REPLAY: dict[int, list[tuple[str, tuple[Any, ...], dict[str, Any]]]] = {
    1: [("set_state", (28, "under-review", 4), {})],
    2: [("set_state", (28, "accepted", 4), {})],
    3: [("set_state", (28, "Changes Requested", 2), {})],
    9: [("set_state", (29, "under-review", 2), {})],
    10: [("set_state", (1, "rfc", 6), {})],
    13: [("set_state", (592, "accepted", 3), {})],
    14: [("set_state", (30, "superseded", 4), {})],
    15: [("set_state", (30, "new", 4), {})],
    16: [("set_delegate", (592, 3, 3), {})],
    17: [("set_delegate", (28, 2, 4), {})],
    22: [("set_delegate", (28, None, 2), {})],
    23: [("set_state", (598, "under-review", 4), {}), ("set_delegate", (598, 4, 4), {})],
    24: [("set_archived", (32, True), {})],
    25: [("set_archived", (32, False), {})],
    26: [("set_archived", (32, True), {})],
    28: [
        ("set_commit_ref", (33, "1c110312bae1de8c5ce5b3640e029670594411e6"), {}),
        ("set_state", (33, "accepted", 4), {}),
    ],
    29: [
        ("set_commit_ref", (33, "deadbeef"), {}),
        ("set_pull_url", (33, "https://git.example.org/pull/1"), {}),
    ],
    31: [("set_related", ([28, 29], 2), {})],
    33: [("set_related", ([30, 28, 29], 2), {})],
    35: [("set_related", ([29], 2), {})],
    # A PUT without "related": 30 leaves its relation of two, silently.
    38: [
        ("set_related", ([30],), {}),
        ("set_state", (30, "deferred", 4), {}),
        ("set_archived", (30, True), {}),
    ],
    43: [("add_check", (28, 4, "success", "ci-build", "https://ci.example.org/1", "build ok"), {})],
    44: [
        (
            "add_check",
            (28, 4, "warning", "checkpatch", "https://ci.example.org/2", "3 warnings"),
            {},
        )
    ],
    45: [("add_check", (28, 4, "fail", "ci-build"), {})],
    52: [("add_check", (1, 6, "pending", "contrib-ci"), {})],
    53: [("add_check", (29, 5, "success", "old-ci"), {})],
    55: [("set_comment_addressed", ("patch", 1, True), {})],
    56: [("set_comment_addressed", ("patch", 1, False), {})],
    61: [("set_comment_addressed", ("cover", 1, True), {})],
    89: [("update", ("projects", 1), {"web_url": "https://example.org/pw"})],
    90: [("update", ("projects", 1), {"scm_url": "git://example.org/pw.git"})],
    93: [
        (
            "update",
            ("projects", 2),
            {"show_dependencies": True, "commit_url_format": "https://example.org/c/{}"},
        )
    ],
    94: [("update", ("projects", 2), {"show_dependencies": False})],
}
#: Bundle and user writes (63-88) are left out, and so are their reads.
REPLAYED_STEPS = set(range(1, 63)) | set(range(89, 97))


def without_new_dates(data: Any) -> Any:
    """Dates after the crawl (events, checks) differ between two runs."""
    if isinstance(data, dict):
        return {k: without_new_dates(v) for k, v in data.items()}
    if isinstance(data, list):
        return [without_new_dates(v) for v in data]
    if isinstance(data, str) and re.fullmatch(r"\d{4}-.*", data) and data > CRAWL_END:
        return "NEW"
    return data


def test_replayed_writes_match_real_patchwork(fake: FakePatchwork, client: Client) -> None:
    """After each recorded write, real Patchwork's events and objects (read
    by the recorded identities) equal the fake's after the same change."""
    users = {fake.render("users", i)["username"]: i for i in fake.ids("users")}
    fake.tokens = {token: users[name] for name, token in tokens().items()}
    records = list(read_records(FIXTURES / "writes.jsonl.xz"))
    done: set[int] = set()
    compared = 0
    for record in records:
        step = record["step"]
        if step not in REPLAYED_STEPS or record["role"] == "write":
            continue
        if step in REPLAY and step not in done:
            for method, args, kwargs in REPLAY[step]:
                getattr(fake, method)(*args, **kwargs)
            done.add(step)
        answer = client.get(record["path"], auth_header(record.get("auth")))
        body, _ = expected(record, client.url)
        assert answer.status == record["status"], (step, record["path"])
        assert without_new_dates(answer.json) == without_new_dates(body), (step, record["path"])
        compared += 1
    assert done == set(REPLAY) and compared > 130


# ----------------------------------------------------------------------
# Test controls


def test_outage_delay_and_request_counts(fake: FakePatchwork, client: Client) -> None:
    fake.reset_requests()
    seen: list[str] = []
    fake.on_request = seen.append
    client.api("patches/1/")
    client.api("patches/1/")
    client.api("projects/")
    assert fake.requests == 3
    assert fake.path_counts()["/api/1.4/patches/1/"] == 2
    assert seen == ["/api/1.4/patches/1/", "/api/1.4/patches/1/", "/api/1.4/projects/"]
    fake.down = True
    assert client.api("projects/").status == 503
    fake.down = False
    fake.delay = 0.2
    began = time.monotonic()
    assert client.api("projects/").status == 200
    assert time.monotonic() - began >= 0.2
    assert fake.requests == 5


def test_changes_while_serving(fake: FakePatchwork, client: Client) -> None:
    """The lock keeps every answer consistent while another thread writes."""
    failures: list[str] = []

    def write() -> None:
        try:
            for _ in range(30):
                fake.add_check(3, 4, "success", "stress")
                fake.new_series(1, 1, n_patches=1, cover=False)
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(repr(exc))

    writer = threading.Thread(target=write)
    writer.start()
    statuses = {client.api("events/?per_page=50").status}
    while writer.is_alive():
        statuses.add(client.api("events/?per_page=50").status)
        statuses.add(client.api("patches/?page=last").status)
    writer.join()
    assert not failures and statuses == {200}
    assert len(client.api("patches/3/checks/?per_page=250").json) == 30
