"""Routes come from the resource descriptions alone: every endpoint at the
versions its description gives, and a new resource or endpoint version
needs only a description."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.api.routing import API, Router, resolve_api
from mirror.resources import RESOURCES


@pytest.mark.parametrize(
    ("path", "resource", "kind", "parent", "key"),
    [
        ("/api/1.4/patches/", "patches", "list", None, None),
        ("/api/patches/7/", "patches", "detail", None, "7"),
        ("/api/1.0/projects/linux-arm-kernel/", "projects", "detail", None, "linux-arm-kernel"),
        ("/api/1.0/patches/7/checks/", "checks", "list", 7, None),
        ("/api/1.0/patches/7/checks/3/", "checks", "detail", 7, "3"),
        ("/api/1.1/patches/7/comments/", "patch_comments", "list", 7, None),
        ("/api/1.3/covers/2/comments/9/", "cover_comments", "detail", 2, "9"),
        ("/api/1x4/covers/2/comments/9/", "cover_comments", "detail", 2, "9"),  # Patchwork's dots
        ("/api/events/", "events", "list", None, None),
    ],
)
def test_paths_resolve_to_their_resource(path, resource, kind, parent, key):
    route = resolve_api(path)
    assert route is not None
    assert (route.resource.name, route.kind, route.parent_id, route.key) == (
        resource,
        kind,
        parent,
        key,
    )


@pytest.mark.parametrize(
    "path",
    [
        "/api/1.0/patches/7/comments/",  # comment lists from 1.1
        "/api/1.2/patches/7/comments/3/",  # their details from 1.3
        "/api/1.4/events/1/",  # no event detail
        "/api/1.4/patches/x/",  # ids are numbers
        "/api/1.4/patches",  # (the slash: a redirect, elsewhere)
        "/api/1.5/patches/",
        "/api/1.4/checks/",  # checks live under their patch
    ],
)
def test_what_upstream_does_not_serve_does_not_resolve(path):
    assert resolve_api(path) is None


def test_every_endpoint_has_a_bounded_template_naming_its_parameters():
    templates = {route.template for route in map(resolve_api, _concrete_paths())}
    assert "/api/{version}/patches/{patch_id}/checks/{id}/" in templates
    assert "/api/{version}/covers/{cover_id}/comments/" in templates
    assert len(templates) == len(API.endpoints)


def _concrete_paths() -> list[str]:
    return [
        "/api/"
        + endpoint.path.replace("{patch_id}", "1").replace("{cover_id}", "1").replace("{id}", "1")
        for endpoint in API.endpoints
    ]


def test_a_new_resource_is_one_description():
    releases = dataclasses.replace(
        RESOURCES["projects"],
        name="releases",
        path="releases",
        list_since="1.4",
        detail_since="1.4",
    )
    router = Router([*RESOURCES.values(), releases])
    assert router.resolve("/api/1.4/releases/").resource is releases
    assert router.resolve("/api/releases/linux/").key == "linux"
    assert router.resolve("/api/1.3/releases/") is None
    assert resolve_api("/api/1.4/releases/") is None  # (the real API has none)


def test_an_endpoint_version_is_one_edit_of_a_description():
    earlier = dataclasses.replace(RESOURCES["patch_comments"], detail_since="1.1")
    router = Router([*(r for r in RESOURCES.values() if r.name != "patch_comments"), earlier])
    assert router.resolve("/api/1.1/patches/7/comments/3/").key == "3"
    assert router.resolve("/api/1.0/patches/7/comments/3/") is None
    assert resolve_api("/api/1.1/patches/7/comments/3/") is None
