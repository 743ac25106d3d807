"""The fake Patchwork's XML-RPC API (``/xmlrpc/``), as pwclient's xmlrpc backend uses it.

The real ``pwclient`` (its installed console script) runs against the fake
served over HTTP with the recorded instance's users, as ``stephen`` (a
maintainer of ``patchwork``): its reads print what the fake holds, its
updates change what the REST API shows and emit the events Patchwork emits
(a state change: patch-state-changed; archiving and a commit ref: none; a
check: check-created).  ``xmlrpc.client`` then checks what pwclient does
not reach: filters, faults as Patchwork's dispatcher answers them, and the
HTTP answers of the view.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sync.recorded import read_records
from tests.fake import CRAWL, FakePatchwork
from tests.support import ThreadedServer, request, tokens

PWCLIENT = Path(sys.executable).parent / "pwclient"
PROJECT = 1  # patchwork, maintained by stephen
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def crawl_records() -> list[dict[str, Any]]:
    return list(read_records(CRAWL))


@pytest.fixture
def fake(crawl_records: list[dict[str, Any]]) -> FakePatchwork:
    fake = FakePatchwork.from_records(crawl_records)
    fake.tokens = {token: user_id(fake, name) for name, token in tokens().items()}
    return fake


@pytest.fixture
def server(fake: FakePatchwork) -> Iterator[ThreadedServer]:
    with ThreadedServer(fake.app()) as server:
        yield server


@pytest.fixture
def pwclient(server: ThreadedServer, tmp_path: Path) -> Any:
    """Runs ``pwclient ARGS`` as stephen, in ``tmp_path``; returns the process."""
    rc = tmp_path / "pwclientrc"
    rc.write_text(
        "[options]\ndefault = patchwork\n\n[patchwork]\nbackend = xmlrpc\n"
        f"url = {server.url}/xmlrpc/\nusername = stephen\npassword = pw-stephen\n"
    )
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "PAGER"}
    env.update(PWCLIENTRC=str(rc), LC_ALL="C.UTF-8")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PWCLIENT), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
        )

    return run


def rpc(server: ThreadedServer, user: str | None = "stephen", password: str | None = None) -> Any:
    """An XML-RPC client, with Basic credentials of ``user`` (``pw-<user>``)."""
    url = f"{server.url}/xmlrpc/"
    if user is not None:
        url = url.replace("://", f"://{user}:{password or 'pw-' + user}@")
    return xmlrpc.client.ServerProxy(url, allow_none=True)


def user_id(fake: FakePatchwork, username: str) -> int:
    return next(i for i in fake.ids("users") if fake.render("users", i)["username"] == username)


def fault(call: Any, *args: Any) -> str:
    with pytest.raises(xmlrpc.client.Fault) as caught:
        call(*args)
    assert caught.value.faultCode == 1
    return str(caught.value.faultString)


def new_events(fake: FakePatchwork, before: list[int]) -> list[dict[str, Any]]:
    return [fake.render("events", i) for i in fake.ids("events") if i not in before]


def project_patches(fake: FakePatchwork, **wanted: Any) -> list[dict[str, Any]]:
    patches = [fake.render("patches", i) for i in fake.ids("patches")]
    patches = [p for p in patches if p["project"]["id"] == PROJECT]
    return [p for p in patches if all(p[k] == v for k, v in wanted.items())]


def fresh_patch(fake: FakePatchwork) -> dict[str, Any]:
    """A new, unarchived patch of the project with no checks."""
    return next(p for p in project_patches(fake, state="new", archived=False, check="pending"))


# ----------------------------------------------------------------------
# pwclient


@pytest.mark.slow
def test_pwclient_reads(fake: FakePatchwork, pwclient: Any) -> None:
    projects = pwclient("projects")
    assert projects.returncode == 0, projects.stderr
    lines = projects.stdout.splitlines()
    assert lines[:2] == [
        "ID    Name                     Description",
        "--    ----" + " " * 21 + "-" * 11,
    ]
    # Ordered by linkname, as Patchwork's Project model is.
    assert lines[2:] == [
        "2     aiohttp                  aiohttp",
        "3     linux-arm-kernel         Linux ARM Kernel Architecture",
        "1     patchwork                Patchwork",
    ]

    listed = pwclient("list")
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()[2:]
    patches = project_patches(fake)
    assert len(rows) == len(patches)
    first = min(patches, key=lambda p: (p["date"], p["id"]))
    assert rows[0] == f"{first['id']:<7} {fake.state(first['state']).name:<12} {first['name']}"

    new = pwclient("list", "-s", "New")
    assert new.returncode == 0, new.stderr
    rows = new.stdout.splitlines()[2:]
    assert len(rows) == len(project_patches(fake, state="new")) < len(patches)
    assert all(row.split()[1] == "New" for row in rows)

    info = pwclient("info", "7")
    assert info.returncode == 0, info.stderr
    patch = fake.render("patches", 7)
    lines = info.stdout.splitlines()
    assert lines[:2] == ["Information for patch id 7", "-" * 26]
    assert f"- commit_ref    : {patch['commit_ref']}" in lines
    assert f"- msgid         : {patch['msgid']}" in lines
    assert "- submitter     : Jeremy Kerr <jk@ozlabs.org>" in lines
    assert "- delegate      : None" in lines
    assert "- delegate_id   : 0" in lines
    assert "- project       : Patchwork" in lines
    assert "- filename      : 4-12-newforms-is-just-forms-now." in lines
    assert f"- date          : {patch['date'].replace('T', ' ')}" in lines

    view = pwclient("view", "7")
    assert view.returncode == 0, view.stderr
    assert view.stdout.startswith("From patchwork Thu Aug 21 02:06:37 2008\n")
    assert "\nX-Patchwork-Id: 7\n" in view.stdout
    assert f"\nSubject: {patch['headers']['Subject']}\n" in view.stdout
    assert patch["diff"] in view.stdout

    states = pwclient("states")
    assert states.returncode == 0, states.stderr
    assert states.stdout.splitlines()[2:] == [f"{s.id:<5} {s.name}" for s in fake.states]


@pytest.mark.slow
def test_pwclient_updates(fake: FakePatchwork, server: ThreadedServer, pwclient: Any) -> None:
    patch = fresh_patch(fake)
    pid, stephen = patch["id"], user_id(fake, "stephen")

    def rest() -> dict[str, Any]:
        reply = request("GET", f"{server.url}/api/patches/{pid}/")
        assert reply.status == 200
        return dict(json.loads(reply.body))

    before = fake.ids("events")
    done = pwclient("update", "-s", "accepted", str(pid))
    assert done.returncode == 0, done.stderr
    assert rest()["state"] == "accepted"
    events = new_events(fake, before)
    assert [e["category"] for e in events] == ["patch-state-changed"]
    assert events[0]["payload"]["patch"]["id"] == pid
    assert events[0]["payload"]["previous_state"] == "new"
    assert events[0]["payload"]["current_state"] == "accepted"
    assert events[0]["actor"]["username"] == "stephen"

    before = fake.ids("events")
    done = pwclient("update", "-a", "yes", str(pid))
    assert done.returncode == 0, done.stderr
    assert rest()["archived"] is True
    assert new_events(fake, before) == []

    # pwclient itself refuses a commit ref alone (it wants -s or -a too).
    refused = pwclient("update", "-c", SHA, str(pid))
    assert refused.returncode == 1
    assert "Must specify one or more update options (-a or -s)" in refused.stderr
    assert rest()["commit_ref"] is None
    done = pwclient("update", "-s", "accepted", "-c", SHA, str(pid))
    assert done.returncode == 0, done.stderr
    after = rest()
    assert (after["commit_ref"], after["state"], after["archived"]) == (SHA, "accepted", True)
    assert new_events(fake, before) == []

    before, checks = fake.ids("events"), fake.ids("checks")
    done = pwclient("check-create", "-c", "ctx", "-s", "success", str(pid))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    (check_id,) = set(fake.ids("checks")) - set(checks)
    check = fake.render("checks", check_id)
    assert (check["context"], check["state"], check["user"]["id"]) == ("ctx", "success", stephen)
    assert (check["target_url"], check["description"]) == ("", "")
    assert rest()["check"] == "success"
    events = new_events(fake, before)
    assert [e["category"] for e in events] == ["check-created"]
    assert events[0]["payload"]["check"]["id"] == check_id
    assert events[0]["payload"]["patch"]["id"] == pid
    assert events[0]["actor"]["username"] == "stephen"

    listed = pwclient("check-list", str(pid))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[2:] == [
        f"{check_id:<5} {'ctx':<16} {'success':<8} {patch['name']}"
    ]


@pytest.mark.slow
def test_pwclient_denied(fake: FakePatchwork, pwclient: Any, tmp_path: Path) -> None:
    rc = tmp_path / "pwclientrc"
    rc.write_text(rc.read_text().replace("stephen", "outsider"))
    patch = fresh_patch(fake)
    before = fake.ids("events")
    denied = pwclient("update", "-s", "accepted", str(patch["id"]))
    assert denied.returncode == 1
    assert "No permissions to edit this patch" in denied.stderr
    assert fake.render("patches", patch["id"])["state"] == "new"
    assert fake.ids("events") == before
    rc.write_text(rc.read_text().replace("pw-outsider", "wrong"))
    refused = pwclient("check-create", "-c", "ctx", "-s", "success", str(patch["id"]))
    assert "Invalid username/password" in refused.stderr


# ----------------------------------------------------------------------
# The methods, with xmlrpc.client


def decoded(item: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v.data.decode() if isinstance(v, xmlrpc.client.Binary) else v for k, v in item.items()
    }


def test_reads(fake: FakePatchwork, server: ThreadedServer) -> None:
    api = rpc(server, None)
    assert api.pw_rpc_version() == [1, 3, 0]
    assert api.project_list("arm", 0) == [
        {"id": 3, "linkname": "linux-arm-kernel", "name": "Linux ARM Kernel Architecture"}
    ]
    assert api.project_get(1) == {"id": 1, "linkname": "patchwork", "name": "Patchwork"}
    assert api.project_get(99) == {}
    assert decoded(api.person_get(1)) == {
        "id": 1,
        "email": "jk@ozlabs.org",
        "name": "Jeremy Kerr",
        "user": "contrib",
    }
    assert [p["id"] for p in api.person_list("OZLABS", 0)] == [
        i for i in fake.ids("people") if "ozlabs" in fake.render("people", i)["email"]
    ]
    assert api.state_list("acc", 0) == [{"id": 3, "name": "Accepted"}]
    assert api.state_get(9) == {"id": 9, "name": "Superseded"}
    assert api.state_get(11) == {}
    assert len(api.state_list("", 3)) == 3
    assert api.state_list("", -1) == [{"id": 10, "name": "Deferred"}]

    patch = fake.render("patches", 7)
    got = decoded(api.patch_get(7))
    assert got == {
        "id": 7,
        "date": patch["date"].replace("T", " "),
        "filename": "4-12-newforms-is-just-forms-now.",
        "msgid": patch["msgid"],
        "name": patch["name"],
        "project": "Patchwork",
        "project_id": 1,
        "state": fake.state(patch["state"]).name,
        "state_id": fake.state(patch["state"]).id,
        "archived": False,
        "submitter": "Jeremy Kerr <jk@ozlabs.org>",
        "submitter_id": 1,
        "delegate": "None",
        "delegate_id": 0,
        "commit_ref": patch["commit_ref"],
        "hash": patch["hash"],
    }
    assert api.patch_get(999_999) == {}
    assert api.patch_get_diff(7) == patch["diff"]
    assert api.patch_get_diff(999_999) == ""
    assert api.patch_get_mbox(999_999) == ""
    assert api.patch_get_by_project_hash("patchwork", patch["hash"])["id"] == 7
    assert api.patch_get_by_project_hash("aiohttp", patch["hash"]) == {}
    assert api.patch_get_by_hash(patch["hash"])["id"] == 7
    delegated = next(p for p in project_patches(fake) if p["delegate"])
    assert decoded(api.patch_get(delegated["id"]))["delegate"] == delegated["delegate"]["username"]


def test_patch_list_filters(fake: FakePatchwork, server: ThreadedServer) -> None:
    api = rpc(server, None)
    patches = sorted(
        (fake.render("patches", i) for i in fake.ids("patches")), key=lambda p: (p["date"], p["id"])
    )

    def ids(filt: dict[str, Any]) -> list[int]:
        return [p["id"] for p in api.patch_list(filt)]

    def where(test: Any) -> list[int]:
        return [p["id"] for p in patches if test(p)]

    assert ids({}) == [p["id"] for p in patches]
    assert ids({"project_id": 2, "state_id": 3}) == where(
        lambda p: p["project"]["id"] == 2 and p["state"] == "accepted"
    )
    assert ids({"archived": True, "project_id": 1}) == where(
        lambda p: p["archived"] and p["project"]["id"] == 1
    )
    assert ids({"submitter_id": 1}) == where(lambda p: p["submitter"]["id"] == 1)
    assert ids({"msgid": patches[5]["msgid"]}) == [patches[5]["id"]]
    assert ids({"hash": patches[5]["hash"]}) == where(lambda p: p["hash"] == patches[5]["hash"])
    assert ids({"name__icontains": "FIX"}) == where(lambda p: "fix" in p["name"].lower())
    assert ids({"name__contains": "FIX"}) == ids({"name__icontains": "FIX"})  # SQLite's LIKE
    assert ids({"id__in": [3, 1, 2]}) == where(lambda p: p["id"] in (1, 2, 3))
    assert ids({"id__gt": 760}) == where(lambda p: p["id"] > 760)
    assert ids({"date__year": 2008}) == where(lambda p: p["date"].startswith("2008"))
    assert ids({"commit_ref__isnull": False}) == where(lambda p: p["commit_ref"] is not None)
    assert ids({"max_count": 2}) == [p["id"] for p in patches[:2]]
    assert ids({"max_count": -2}) == [p["id"] for p in patches[-2:]]
    # What Patchwork answers with an empty list: unknown fields, lookups, objects.
    assert ids({"series": 1}) == []
    assert ids({"name__lte": "x"}) == []
    assert ids({"project_id": 99}) == []
    assert ids({"state_id": 99}) == []
    # ... and with a fault: Patch.delegate is a User, the filter looks up a Person.
    assert fault(api.patch_list, {"delegate_id": 1}) == (
        "<class 'ValueError'>:"
        'Cannot query "Jeremy Kerr <jk@ozlabs.org>": Must be "User" instance.'
    )
    assert fault(api.patch_list, {"archived": "yes"}) == (
        "<class 'django.core.exceptions.ValidationError'>:"
        "['“yes” value must be either True or False.']"
    )
    assert fault(api.patch_list, {"id": "x"}) == (
        "<class 'ValueError'>:Field 'id' expected a number but got 'x'."
    )


def test_checks(fake: FakePatchwork, server: ThreadedServer) -> None:
    api = rpc(server)
    with_checks = [
        i for i in fake.ids("patches") if fake.render("patches", i)["check"] != "pending"
    ]
    pid = with_checks[0]
    recorded = fake.ids("checks")
    listed = api.check_list({"patch_id": pid})
    assert listed
    first = decoded(listed[0])
    check = fake.render("checks", first["id"])
    assert first == {
        "id": check["id"],
        "date": check["date"].replace("T", " "),
        "patch": fake.render("patches", pid)["name"],
        "patch_id": pid,
        "user": check["user"]["username"],
        "user_id": check["user"]["id"],
        "state": check["state"],
        "target_url": check["target_url"],
        "description": check["description"],
        "context": check["context"],
    }
    assert decoded(api.check_get(check["id"])) == first
    assert api.check_get(999_999) == {}
    assert len(api.check_list({})) == len(recorded)
    assert [c["id"] for c in api.check_list({"user": 2})] == [
        c for c in recorded if fake.render("checks", c)["user"]["id"] == 2
    ]
    assert len(api.check_list({"max_count": 2, "project_id": 1})) == 2
    assert fault(api.check_list, {"patch_id": 999_999}) == (
        "<class 'IndexError'>:list index out of range"
    )
    assert fault(api.check_list, {"user": "stephen"}) == (
        "<class 'ValueError'>:Field 'id' expected a number but got 'stephen'."
    )
    combined = api.patch_check_get(pid)
    assert combined["state"] == fake.render("patches", pid)["check"]
    assert combined["total"] == len(combined["checks"])

    fresh = fresh_patch(fake)["id"]
    assert api.patch_check_get(fresh) == {"state": "pending", "total": 0, "checks": []}
    assert fault(api.check_create, fresh, "ctx", "bogus") == (
        "<class 'Exception'>:Invalid check state: bogus"
    )
    assert api.check_create(fresh, "ci", "fail", "https://ci.example.org/1", "broke") is True
    assert api.patch_check_get(fresh)["state"] == "fail"
    # A check without a URL (REST's default) holds a null, which XML-RPC cannot send.
    fake.add_check(fresh, 2, "success", "other")
    assert fault(api.check_list, {"patch_id": fresh}) == (
        "<class 'TypeError'>:cannot marshal None unless allow_none is enabled"
    )


def test_patch_set(fake: FakePatchwork, server: ThreadedServer) -> None:
    api = rpc(server)
    pid = fresh_patch(fake)["id"]
    before = fake.ids("events")
    # Only state, commit_ref and archived: a delegate is ignored.
    assert api.patch_set(pid, {"delegate": 2, "archived": "t", "commit_ref": 123}) is True
    patch = fake.render("patches", pid)
    assert (patch["delegate"], patch["archived"], patch["commit_ref"]) == (None, True, "123")
    assert api.patch_set(pid, {"state": 1}) is True  # unchanged: no event
    assert new_events(fake, before) == []
    assert api.patch_set(pid, {"state": 2}) is True
    assert [e["category"] for e in new_events(fake, before)] == ["patch-state-changed"]

    before = fake.ids("events")
    assert fault(api.patch_set, pid, {"state": 99}) == (
        "<class 'patchwork.models.State.DoesNotExist'>:State matching query does not exist."
    )
    assert fault(api.patch_set, 999_999, {}) == (
        "<class 'patchwork.models.Patch.DoesNotExist'>:Patch matching query does not exist."
    )
    assert fault(api.patch_set, pid, {"archived": "maybe", "state": 3}).startswith(
        "<class 'django.core.exceptions.ValidationError'>:"
    )
    assert fault(api.patch_set, pid) == (
        "<class 'TypeError'>:patch_set() missing 1 required positional argument: 'params'"
    )
    assert fake.render("patches", pid)["state"] == "under-review"
    assert new_events(fake, before) == []


def test_faults(fake: FakePatchwork, server: ThreadedServer) -> None:
    pid = fresh_patch(fake)["id"]
    assert fault(rpc(server).pw_rpc.version) == (
        "<class 'Exception'>:method \"pw_rpc.version\" is not supported"
    )
    assert fault(rpc(server, None).patch_set, pid, {}) == (
        "<class 'Exception'>:No authentication credentials given"
    )
    assert fault(rpc(server, "stephen", "wrong").patch_set, pid, {}) == (
        "<class 'Exception'>:Invalid username/password"
    )
    assert fault(rpc(server, "outsider").check_create, pid, "c", "success") == (
        "<class 'Exception'>:No permissions to edit this patch"
    )
    # The patch's submitter (a person of user contrib) may change it.
    submitter = fake.render("patches", pid)["submitter"]["id"]
    assert fake.render("people", submitter)["user"]["username"] == "contrib"
    assert rpc(server, "contrib").patch_set(pid, {"archived": True}) is True
    assert fake.render("patches", pid)["archived"] is True

    body = xmlrpc.client.dumps((pid, {}), "patch_set").encode()

    def post(auth: str, payload: bytes = body) -> str:
        reply = request("POST", f"{server.url}/xmlrpc/", {"Authorization": auth}, payload)
        assert reply.status == 200
        try:
            xmlrpc.client.loads(reply.body)
        except xmlrpc.client.Fault as exc:
            return str(exc.faultString)
        raise AssertionError("no fault")

    token = tokens()["stephen"]
    assert post(f"Token {token}") == "<class 'Exception'>:Authentication scheme not supported"
    assert post("Basic !!!") == "<class 'Exception'>:Invalid authentication credentials"
    nocolon = base64.b64encode(b"stephen").decode()
    assert post(f"Basic {nocolon}") == "<class 'Exception'>:Invalid authentication credentials"
    assert post("Basic x", b"<bogus").startswith("<class 'xml.parsers.expat.ExpatError'>:")
    # Without tokens, any credentials stand for the crawl's identity (a maintainer).
    fake.tokens = None
    assert rpc(server, "anyone", "anything").patch_set(pid, {"commit_ref": "abc"}) is True
    assert fake.render("patches", pid)["commit_ref"] == "abc"


def test_http(fake: FakePatchwork, server: ThreadedServer) -> None:
    page = request("GET", f"{server.url}/xmlrpc/")
    assert page.status == 200
    assert page.header("Content-Type") == "text/html; charset=utf-8"
    assert b"patch_list" in page.body and b"check_create" in page.body
    call = xmlrpc.client.dumps((), "pw_rpc_version").encode()
    answer = request("POST", f"{server.url}/xmlrpc/", {"Content-Type": "text/xml"}, call)
    assert (answer.status, answer.header("Content-Type")) == (200, "text/html; charset=utf-8")
    assert xmlrpc.client.loads(answer.body) == (([1, 3, 0],), None)
    moved = request("POST", f"{server.url}/xmlrpc", {}, call)
    assert (moved.status, moved.header("Location")) == (301, "/xmlrpc/")
    other = request("PUT", f"{server.url}/xmlrpc/", {}, call)
    assert (other.status, other.header("Location")) == (302, "/")
    assert [r.path for r in fake.received][-4:] == ["/xmlrpc/", "/xmlrpc/", "/xmlrpc", "/xmlrpc/"]
    fake.serve_xmlrpc = False
    assert request("POST", f"{server.url}/xmlrpc/", {}, call).status == 404
