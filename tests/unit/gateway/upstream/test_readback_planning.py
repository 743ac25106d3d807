"""Which writes are read back, and what of them (gateway.upstream.readback)."""

from __future__ import annotations

import xmlrpc.client

import pytest

from gateway.api.routing import resolve_api
from gateway.upstream.readback import wanted, xmlrpc_succeeded, xmlrpc_wanted


def _route(path: str):
    route = resolve_api(path)
    assert route is not None
    return route


@pytest.mark.parametrize(
    ("method", "path", "body", "details", "sublists", "related_of", "events"),
    [
        ("PATCH", "/api/1.4/patches/7/", b"{}", set(), set(), {7}, {"patch": 7}),
        (
            "POST",
            "/api/1.4/patches/7/checks/",
            b"{}",
            {("patches", 7)},
            {("checks", 7)},
            set(),
            {"patch": 7},
        ),
        (
            "PATCH",
            "/api/1.3/covers/2/comments/4/",
            b"{}",
            set(),
            {("cover_comments", 2)},
            set(),
            {"cover": 2},
        ),
        ("POST", "/api/1.4/bundles/", b'{"id": 12}', {("bundles", 12)}, set(), set(), {}),
        ("PATCH", "/api/1.4/projects/linux/", b'{"id": 3}', {("projects", 3)}, set(), set(), {}),
        ("DELETE", "/api/1.4/bundles/5/", b"", {("bundles", 5)}, set(), set(), {}),
        ("POST", "/api/1.4/bundles/", b"not json", set(), set(), set(), {}),
    ],
)
def test_an_api_write_is_read_back_with_its_events(
    method, path, body, details, sublists, related_of, events
):
    want, filters = wanted(method, _route(path), body)
    assert (want.details, want.sublists, want.related_of) == (details, sublists, related_of)
    assert filters == events


def test_xmlrpc_writes_read_back_the_patch_and_a_new_checks_list():
    call = xmlrpc.client.dumps((7, "ci", "success"), "check_create").encode()
    want, events = xmlrpc_wanted(call)
    assert want.related_of == {7} and ("checks", 7) in want.sublists
    assert events == {"patch": 7}
    reading = xmlrpc.client.dumps((7,), "patch_get").encode()
    assert not xmlrpc_wanted(reading)[0]
    assert not xmlrpc_wanted(b"<not xml")[0]


def test_only_a_result_is_a_success_not_a_fault():
    result = xmlrpc.client.dumps((True,), methodresponse=True).encode()
    fault = xmlrpc.client.dumps(xmlrpc.client.Fault(1, "No authentication credentials given"))
    assert xmlrpc_succeeded(result)
    assert not xmlrpc_succeeded(fault.encode())
    assert not xmlrpc_succeeded(b"<html>oops</html>")
