"""HTTP writes to the fake Patchwork, answered as real Patchwork answered them.

``fixtures/writes.jsonl.xz`` is a sequence of writes made to a real
Patchwork 3.x holding exactly the recorded crawl's data, each followed by
reads of what it changed.  Replayed in order over HTTP against a fresh
fake built from the crawl (with the recorded instance's tokens, so that
every identity is the real one), every answer must be the recorded one:
status, headers (``Allow``, ``Location``, ``Link``, ``Content-Type``) and
body, ids of created checks, bundles and events included.

Excused: dates set at write time (the ``date`` of new events and checks)
cannot be the recorded ones, since they are the clock of the moment; they
must be present and dates after the crawl's end, nothing more.

Added to the crawl: the private bundles of other users, which the crawl's
identity cannot see but the writes' readers do (and whose last id, 16,
the first bundle created must follow); the conformance cases show them.

Other tests cover what the recording does not: bodies in every form DRF
parses, validation messages, authentication, relations, ``received``.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
from collections.abc import Iterator
from typing import Any

import pytest

from sync.recorded import PLACEHOLDER, read_records
from tests.fake import FakePatchwork
from tests.support import (
    CONFORMANCE,
    FIXTURES,
    Reply,
    ThreadedServer,
    auth_header,
    request,
    tokens,
    with_recorded_identities,
)

WRITES = FIXTURES / "writes.jsonl.xz"
#: Headers whose recorded values the fake must send too.
COMPARED_HEADERS = ("Allow", "Location", "Link", "Content-Type")


@pytest.fixture(scope="module")
def crawl_records() -> list[dict[str, Any]]:
    return list(read_records(FIXTURES / "crawl.jsonl.xz"))


@pytest.fixture
def fake(crawl_records: list[dict[str, Any]]) -> FakePatchwork:
    fake = with_recorded_identities(FakePatchwork.from_records(crawl_records))
    # The crawl's identity cannot see other users' private bundles, which
    # the recorded writes' readers do (and the last of which took id 16):
    # the conformance cases, read by every identity, show them.
    for bundle in hidden_bundles(fake):
        fake.add_recorded("bundles", bundle)
    return fake


@functools.cache
def recorded_bundles() -> dict[int, dict[str, Any]]:
    """Every bundle the conformance cases show, by id."""
    found: dict[int, dict[str, Any]] = {}
    for record in read_records(CONFORMANCE):
        if record["status"] == 200 and "/bundles/" in record["path"]:
            body = record["body"]
            for item in body if isinstance(body, list) else [body]:
                found.setdefault(item["id"], item)
    return found


def hidden_bundles(fake: FakePatchwork) -> list[dict[str, Any]]:
    """The bundles the conformance cases show and the crawl does not."""
    known = set(fake.ids("bundles"))
    return [b for i, b in sorted(recorded_bundles().items()) if i not in known]


@pytest.fixture
def server(fake: FakePatchwork) -> Iterator[ThreadedServer]:
    with ThreadedServer(fake.app()) as server:
        yield server


def send(
    server: ThreadedServer,
    method: str,
    path: str,
    auth: str | None = None,
    body: str | bytes | None = None,
    content_type: str | None = None,
) -> Reply:
    headers = auth_header(auth)
    if content_type is not None:
        headers["Content-Type"] = content_type
    raw = body.encode() if isinstance(body, str) else body
    return request(method, server.url + path, headers, raw)


def excuse_new_dates(data: Any, crawl_end: dt.datetime) -> Any:
    """Dates set at write time become a marker: the fake's must be dates too."""
    if isinstance(data, list):
        return [excuse_new_dates(v, crawl_end) for v in data]
    if not isinstance(data, dict):
        return data
    out = {}
    for key, value in data.items():
        is_date = key == "date" and isinstance(value, str)
        if is_date and dt.datetime.fromisoformat(value) > crawl_end:
            value = "<set at write time>"
        out[key] = excuse_new_dates(value, crawl_end)
    return out


def test_replays_every_recorded_write_and_read(fake: FakePatchwork, server: ThreadedServer) -> None:
    records = list(read_records(WRITES))
    crawl_end = fake.now
    origin = server.url
    methods = set()
    for index, record in enumerate(records):
        where = (index, record["method"], record["path"], record["auth"])
        answer = send(
            server,
            record["method"],
            record["path"],
            record["auth"],
            record.get("request_body"),
            record.get("request_content_type"),
        )
        methods.add(record["method"])
        assert answer.status == record["status"], where
        for name in COMPARED_HEADERS:
            want = record["headers"].get(name)
            want = want.replace(PLACEHOLDER, origin) if want is not None else None
            assert answer.header(name) == want, (where, name)
        body = record["body"]
        if isinstance(body, str):  # HTML error pages, and a 204's nothing
            assert answer.body.decode() == body.replace(PLACEHOLDER, origin), where
            continue
        expected = json.loads(json.dumps(body).replace(PLACEHOLDER, origin))
        got = excuse_new_dates(json.loads(answer.body), crawl_end)
        assert got == excuse_new_dates(expected, crawl_end), where
    assert methods == {"GET", "PATCH", "PUT", "POST", "DELETE"} and len(records) > 250
    writes = fake.writes_received()
    assert len(writes) == sum(r["method"] != "GET" for r in records)
    assert writes[0].json() == {"state": "under-review"}


def test_received_keeps_what_a_proxy_forwarded(fake: FakePatchwork, server: ThreadedServer) -> None:
    fake.reset_requests()
    body = b"state=rfc&related=29&related=30"
    headers = {
        "Authorization": f"Token {tokens()['stephen']}",
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Forwarded-For": "192.0.2.1",
    }
    request("PATCH", server.url + "/api/1.4/patches/28/?x=1", headers, body)
    request("GET", server.url + "/api/1.4/patches/28/")
    first, second = fake.received
    assert (first.method, first.path, first.body) == ("PATCH", "/api/1.4/patches/28/?x=1", body)
    assert first.authorization == headers["Authorization"]
    assert first.content_type == "application/x-www-form-urlencoded"
    assert first.header("x-forwarded-for") == "192.0.2.1"
    assert first.form() == [("state", "rfc"), ("related", "29"), ("related", "30")]
    assert (second.method, second.body, second.authorization) == ("GET", b"", None)
    assert fake.writes_received() == [first]
    fake.max_received = 3
    for _ in range(5):
        request("GET", server.url + "/api/")
    assert len(fake.received) == 3 and fake.requests == 7
    fake.reset_requests()
    assert fake.received == [] and fake.requests == 0


def test_bodies_in_every_form_drf_reads(fake: FakePatchwork, server: ThreadedServer) -> None:
    boundary = "xYzZY"
    multipart = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="state"\r\n\r\nrfc\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="archived"\r\n\r\nyes\r\n'
        f"--{boundary}--\r\n"
    )
    answer = send(
        server,
        "PATCH",
        "/api/1.4/patches/28/",
        "cibot",
        multipart,
        f"multipart/form-data; boundary={boundary}",
    )
    assert answer.status == 200
    assert (fake.get("patches", 28) or {})["state"] == "rfc"
    assert (fake.get("patches", 28) or {})["archived"] is True
    cases = [
        ("{", "application/json", 400, "JSON parse error - Expecting property name enclosed"),
        ("state=new", "text/plain", 415, 'Unsupported media type "text/plain" in request.'),
        ('{"state": NaN}', "application/json", 400, "Out of range float values"),
    ]
    for body, content_type, status, detail in cases:
        answer = send(server, "PATCH", "/api/1.4/patches/28/", "cibot", body, content_type)
        assert answer.status == status
        assert detail in json.loads(answer.body)["detail"]
    # Not an object, and null.
    answer = send(server, "PATCH", "/api/1.4/patches/28/", "cibot", "[1]", "application/json")
    assert json.loads(answer.body) == {
        "detail": ["Invalid data. Expected a dictionary, but got list."]
    }
    answer = send(server, "PATCH", "/api/1.4/patches/28/", "cibot", "null", "application/json")
    assert json.loads(answer.body) == {"detail": ["No data provided"]}
    # A form PUT cannot say false: a missing boolean is false.
    fake.set_archived(28, True)
    answer = send(
        server,
        "PUT",
        "/api/1.4/patches/28/",
        "cibot",
        "state=new&delegate=",
        "application/x-www-form-urlencoded",
    )
    assert answer.status == 200 and json.loads(answer.body)["archived"] is False


def test_validation_messages(fake: FakePatchwork, server: ThreadedServer) -> None:
    def patch(path: str, body: Any, auth: str = "cibot") -> tuple[int, Any]:
        answer = send(server, "PATCH", path, auth, json.dumps(body), "application/json")
        return answer.status, json.loads(answer.body)

    assert patch("/api/1.4/patches/28/", {"commit_ref": ["x"], "archived": None}) == (
        400,
        {"commit_ref": ["Not a valid string."], "archived": ["This field may not be null."]},
    )
    assert patch("/api/1.4/patches/28/", {"related": "29"}) == (
        400,
        {"related": ['Expected a list of items but got type "str".']},
    )
    assert patch("/api/1.4/patches/28/", {"commit_ref": "x" * 256}) == (
        400,
        {"commit_ref": ["Ensure this field has no more than 255 characters."]},
    )
    assert patch("/api/1.4/users/4/", {"settings": {"items_per_page": "many"}}) == (
        400,
        {"settings": {"items_per_page": ["A valid integer is required."]}},
    )
    assert patch("/api/1.4/users/4/", {"settings": "x"}) == (
        400,
        {"settings": {"detail": ["Invalid data. Expected a dictionary, but got str."]}},
    )
    status, body = patch("/api/1.4/projects/1/", {"web_url": "https://example.org/"})
    assert status == 200 and body["web_url"] == "https://example.org/"
    answer = send(
        server,
        "POST",
        "/api/1.4/patches/28/checks/",
        "cibot",
        json.dumps({"state": "success", "target_url": "not a url", "context": ""}),
        "application/json",
    )
    assert json.loads(answer.body) == {
        "target_url": ["Enter a valid URL."],
        "context": ["This field may not be blank."],
    }
    # A state that is no string: StateField calls .lower() on it.
    answer = send(
        server, "PATCH", "/api/1.4/patches/28/", "cibot", '{"state": 3}', "application/json"
    )
    assert answer.status == 500


def test_authentication_as_drf_reads_it(fake: FakePatchwork, server: ThreadedServer) -> None:
    def detail(headers: dict[str, str]) -> Any:
        answer = request("PATCH", server.url + "/api/1.4/patches/28/", headers, b"")
        return answer.status, json.loads(answer.body)

    wrong = base64.b64encode(b"stephen:secret").decode()
    assert detail({"Authorization": f"Basic {wrong}"}) == (
        403,
        {"detail": "Invalid username/password."},
    )
    assert detail({"Authorization": "Token"}) == (
        403,
        {"detail": "Invalid token header. No credentials provided."},
    )
    assert detail({"Authorization": "Basic !!!"})[1] == {
        "detail": "Invalid basic header. Credentials not correctly base64 encoded."
    }
    # The scheme is case-insensitive; unknown schemes are anonymous.
    assert detail({"Authorization": f"token {tokens()['stephen']}"})[0] == 200
    assert detail({"Authorization": "Bearer x"}) == (
        403,
        {"detail": "Authentication credentials were not provided."},
    )
    # Without tokens, any credentials stand for the crawl's identity.
    fake.tokens = None
    assert detail({"Authorization": "Token anything"})[0] == 200
    assert detail({"Authorization": f"Basic {wrong}"})[0] == 200


def test_relations_are_additive(fake: FakePatchwork, server: ThreadedServer) -> None:
    def relate(patch: int, related: list[int]) -> int:
        body = json.dumps({"related": related})
        path = f"/api/1.4/patches/{patch}/"
        return send(server, "PATCH", path, "stephen", body, "application/json").status

    def related(patch: int) -> list[int]:
        return [p["id"] for p in fake.render("patches", patch)["related"]]

    first = max(fake.ids("events")) + 1
    assert relate(28, [29]) == 200 and relate(30, [31, 33]) == 200
    # Patches saved on the way carry no actor; the edited one comes last.
    events = [fake.get("events", i) or {} for i in range(first, max(fake.ids("events")) + 1)]
    assert [(e["patch"], e["actor"]) for e in events] == [
        (29, None),
        (28, 2),
        (33, None),
        (31, None),
        (30, 2),
    ]
    assert relate(28, [30]) == 409  # break before make
    assert relate(29, [32]) == 200 and related(28) == [29, 32]  # additive
    assert relate(30, []) == 200 and related(31) == [33]
    # Leaving a relation of two deletes it: neither patch shows a change.
    before = max(fake.ids("events"))
    assert relate(31, []) == 200 and related(33) == [] and max(fake.ids("events")) == before
    # Only maintainers of every patch involved may relate them.
    body = json.dumps({"related": [592]})
    answer = send(server, "PATCH", "/api/1.4/patches/28/", "andrew", body, "application/json")
    assert answer.status == 403
