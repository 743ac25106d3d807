"""The frame of Patchwork's REST API, shared by its reads and writes.

The versions Patchwork 3.x routes (``/api/1.0/`` to ``/api/1.4/``, and
the unversioned ``/api/`` as the latest) and what each version's URL
patterns route (``patchwork/urls.py``: comment lists from 1.1, comment
details from 1.3, see :data:`ROUTE_SINCE`); where a rendering's URLs
point (DRF's ``reverse()``); each view's ``Allow`` (DRF derives it from the
view's methods, ``patchwork/api/``); DRF's JSON renderer; and the errors
a view answers with (DRF's ``{"detail": ...}``, Django's 404 and 500
pages).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

VERSION = "1.4"

#: Versions Patchwork 3.x routes.
VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4")

#: The origin the recordings hold in place of the recorded instance's
#: (the recorder's placeholder): the default origin of rendered URLs.
PLACEHOLDER = "http://UPSTREAM"


def _has_version(version: str | None, since: str) -> bool:
    """Patchwork's ``utils.has_version``: no version is the latest."""
    return version is None or version.split(".") >= since.split(".")


@dataclass(frozen=True)
class _Ctx:
    """Where a rendering's URLs point: the origin and the API root."""

    origin: str
    api: str
    #: DRF's ``reverse()`` keeps a ``format`` parameter on the URLs it makes.
    suffix: str = ""
    #: The API version fields are rendered for (unversioned: the latest).
    version: str = VERSION

    @classmethod
    def of(
        cls,
        origin: str,
        versioned: bool = True,
        fmt: str | None = None,
        version: str = VERSION,
    ) -> _Ctx:
        api = f"{origin}/api/{version}" if versioned else f"{origin}/api"
        suffix = "" if fmt is None else "?" + urlencode({"format": fmt})
        return cls(origin, api, suffix, version)


@dataclass
class _Route:
    kind: str  # index, list, detail
    resource: str
    versioned: bool
    obj_id: str | None = None
    parent: int | None = None
    #: The version in the path (None: unversioned, the latest).
    version: str | None = None


_V = r"/api/(?:(?P<v>1\.[0-4])/)?"
_LISTS = "projects|people|users|patches|covers|series|bundles|events"
_DETAILS = "people|users|patches|covers|series|bundles"
_ROUTES: list[tuple[re.Pattern[str], str, str | None]] = [
    (re.compile(r"^/api/(?:(?P<v>1\.[0-4])/)?$"), "index", None),
    (re.compile(_V + rf"(?P<res>{_LISTS})/$"), "list", None),
    (re.compile(_V + r"projects/(?P<id>[^/]+)/$"), "detail", "projects"),
    (re.compile(_V + rf"(?P<res>{_DETAILS})/(?P<id>\d+)/$"), "detail", None),
    (re.compile(_V + r"patches/(?P<parent>\d+)/comments/$"), "list", "patch-comments"),
    (
        re.compile(_V + r"patches/(?P<parent>\d+)/comments/(?P<id>\d+)/$"),
        "detail",
        "patch-comments",
    ),
    (re.compile(_V + r"patches/(?P<parent>\d+)/checks/$"), "list", "checks"),
    (re.compile(_V + r"patches/(?P<parent>\d+)/checks/(?P<id>\d+)/$"), "detail", "checks"),
    (re.compile(_V + r"covers/(?P<parent>\d+)/comments/$"), "list", "cover-comments"),
    (re.compile(_V + r"covers/(?P<parent>\d+)/comments/(?P<id>\d+)/$"), "detail", "cover-comments"),
]


def _route(path: str) -> _Route | None:
    for pattern, kind, fixed in _ROUTES:
        match = pattern.match(path)
        if match is None:
            continue
        groups = match.groupdict()
        resource = fixed or groups.get("res") or ""
        parent = groups.get("parent")
        route = _Route(
            kind,
            resource,
            groups.get("v") is not None,
            groups.get("id"),
            int(parent) if parent is not None else None,
            groups.get("v"),
        )
        # Comment lists came with API 1.1, comment details with 1.3.
        since = ROUTE_SINCE.get((resource, kind))
        if since is not None and not _has_version(route.version, since):
            return None
        return route
    return None


#: (resource, kind) -> the first version whose URL patterns include it.
ROUTE_SINCE = {
    ("patch-comments", "list"): "1.1",
    ("cover-comments", "list"): "1.1",
    ("patch-comments", "detail"): "1.3",
    ("cover-comments", "detail"): "1.3",
}

#: ``Allow`` per route, as DRF derives it from each view's methods.
_READ = "GET, HEAD, OPTIONS"
_EDIT = "GET, PUT, PATCH, HEAD, OPTIONS"
ALLOW_LIST = {"bundles": "GET, POST, HEAD, OPTIONS", "checks": "GET, POST, HEAD, OPTIONS"}
ALLOW_DETAIL = {
    "projects": _EDIT,
    "users": _EDIT,
    "patches": _EDIT,
    "patch-comments": _EDIT,
    "cover-comments": _EDIT,
    "bundles": "GET, PUT, PATCH, DELETE, HEAD, OPTIONS",
}


def _allow(route: _Route) -> str:
    if route.kind == "index":
        return _READ
    if route.kind == "list":
        return ALLOW_LIST.get(route.resource, _READ)
    return ALLOW_DETAIL.get(route.resource, _READ)


#: Characters Django's ``reverse()`` leaves unquoted in a path argument.
_URL_SAFE = "!$&'()*+,;=/~:@"


def _dumps(data: Any) -> bytes:
    """DRF's JSONRenderer: compact, UTF-8, with U+2028/U+2029 escaped."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


class _ServerError(Exception):
    """Where Patchwork fails with a 500 (an invalid field in a query)."""


class _Http(Exception):
    """An early JSON answer (403, 404) from a view."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


NOT_AUTHENTICATED = "Authentication credentials were not provided."
DENIED = "You do not have permission to perform this action."

#: Django's plain 500 page (DEBUG off), as the recorded instance sends it.
SERVER_ERROR_PAGE = (
    '\n<!doctype html>\n<html lang="en">\n<head>\n  <title>Server Error (500)</title>\n'
    "</head>\n<body>\n  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n"
)
NOT_FOUND_PAGE = (
    "<html><body><h1>Not Found</h1><p>The requested resource <code>",
    "</code> was not found.</p></body></html>",
)
