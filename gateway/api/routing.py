"""Which Patchwork URL a path is, following ``patchwork/urls.py``.

API paths are ``/api/[<version>/]<endpoint>``.  The endpoints, and the
versions that serve each, come from the resource descriptions alone
(``mirror.resources``): a top-level resource has its list and detail
(``patches/``, ``patches/{id}/``), a nested one lives under its parent's
(``patches/{patch_id}/checks/``), each from the version its description
gives (the comment lists from 1.1, their details from 1.3).  Like
Patchwork, the version patterns' dots match any character (``/api/1x4/``
is served).  Non-API paths are the site's pages and downloads.  Anything
else is a 404; a path that would resolve with a trailing slash is
redirected to it (Django's ``APPEND_SLASH``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mirror.model import Resource
from mirror.resources import RESOURCES
from mirror.versions import LATEST

_API = re.compile(r"^/api/(?:(?P<version>1[^/][0-4])/)?(?P<rest>.*)$", re.S)
#: How a detail's key is written in its path, by the description's lookup.
_KEYS = {"int": "[0-9]+", "project": "[^/]+"}
#: The label of a request no route claimed (unknown paths, bad Hosts).
UNMATCHED = "unmatched"


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of the API, as the descriptions lay it out."""

    resource: Resource
    kind: str  # "list" or "detail"
    #: The path below ``/api/<version>/``, with its parameters named
    #: (``patches/{patch_id}/checks/{id}/``): OpenAPI's, and the metrics'.
    path: str
    #: The first version serving it.
    since: str
    #: The path below the version, as a pattern (group 1: the parent's id
    #: or the detail's key; group 2: a nested detail's key).
    pattern: re.Pattern[str]
    #: Versions serving it, as Patchwork's URL patterns write them (dots
    #: unescaped); None: every version.
    gate: re.Pattern[str] | None

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(re.findall(r"\{(\w+)\}", self.path))

    def served_at(self, version: str | None) -> bool:
        """Whether ``version`` (None: the unversioned latest) serves it."""
        return self.gate is None or version is None or bool(self.gate.fullmatch(version))


def _gate(since: str) -> re.Pattern[str] | None:
    """The versions from ``since`` on, as Patchwork's patterns match them."""
    major, minor = since.split(".")
    last = LATEST.split(".")[1]
    return None if minor == "0" else re.compile(f"{major}.[{minor}-{last}]", re.S)


def endpoints(resources: Iterable[Resource]) -> tuple[Endpoint, ...]:
    """The API's endpoints for these resource descriptions."""
    found = []
    for res in resources:
        if res.parent is None:
            base, stem = f"{res.path}/", f"{re.escape(res.path)}/"
        else:
            parent = RESOURCES[res.parent.resource]
            base = f"{parent.path}/{{{res.parent.url_key}_id}}/{res.path}/"
            stem = f"{re.escape(parent.path)}/([0-9]+)/{re.escape(res.path)}/"
        found.append(
            Endpoint(
                res, "list", base, res.list_since, re.compile(f"^{stem}$"), _gate(res.list_since)
            )
        )
        if res.detail_since is not None:
            detail = re.compile(f"^{stem}({_KEYS[res.lookup]})/$")
            since = res.detail_since
            found.append(Endpoint(res, "detail", base + "{id}/", since, detail, _gate(since)))
    return tuple(found)


@dataclass(frozen=True)
class ApiRoute:
    kind: str  # "index", "list" or "detail"
    version: str | None
    resource: Resource | None = None
    parent_id: int | None = None
    key: str | None = None  # the detail's id (a link name for projects)
    #: The endpoint's template below the origin: a bounded metrics label.
    template: str = "/api/{version}/"


class Router:
    """Resolves API paths to the endpoints of some resource descriptions."""

    def __init__(self, resources: Iterable[Resource]) -> None:
        self.endpoints = endpoints(resources)
        #: The endpoints by the first segment of their path (``patches``):
        #: a path is matched against those alone.
        self._by_segment: dict[str, list[Endpoint]] = {}
        for endpoint in self.endpoints:
            self._by_segment.setdefault(endpoint.path.split("/", 1)[0], []).append(endpoint)

    def resolve(self, path: str) -> ApiRoute | None:
        match = _API.match(path)
        if not match:
            return None
        version, rest = match.group("version"), match.group("rest")
        if rest == "":
            return ApiRoute("index", version)
        for endpoint in self._by_segment.get(rest.split("/", 1)[0], ()):
            m = endpoint.pattern.match(rest)
            if m is None:
                continue
            if not endpoint.served_at(version):
                return None
            template = "/api/{version}/" + endpoint.path
            res = endpoint.resource
            if res.parent is None:
                key = m.group(1) if endpoint.kind == "detail" else None
                return ApiRoute(endpoint.kind, version, res, None, key, template)
            key = m.group(2) if endpoint.kind == "detail" else None
            return ApiRoute(endpoint.kind, version, res, int(m.group(1)), key, template)
        return None


#: The API as the descriptions in ``mirror.resources`` lay it out.
API = Router(RESOURCES.values())
resolve_api = API.resolve


def api_template(route: ApiRoute) -> str:
    """The route's URL template: a bounded metrics label."""
    return route.template


# -- site (non-API) paths -------------------------------------------------------


@dataclass(frozen=True)
class SiteRoute:
    #: "redirect-by-id", "download" and "page" routes are answered from
    #: the mirror (see gateway.site.downloads, gateway.site.pages); "upstream"
    #: routes are pages and downloads only the upstream serves for now
    #: (redirected there); "forward" routes are forwarded as they are
    #: (XML-RPC: Python's xmlrpc.client follows no redirect).
    kind: str
    resource: str | None = None
    obj_id: int | None = None
    suffix: str | None = None  # "web", "mbox" or "raw"
    #: Downloads by project and message id (kind "download").
    project: str | None = None
    msgid: str | None = None


_SITE_BY_ID = [
    (re.compile(r"^/patch/([0-9]+)/$"), "patches", "web"),
    (re.compile(r"^/patch/([0-9]+)/mbox/$"), "patches", "mbox"),
    (re.compile(r"^/patch/([0-9]+)/raw/$"), "patches", "raw"),
    (re.compile(r"^/cover/([0-9]+)/$"), "covers", "web"),
    (re.compile(r"^/cover/([0-9]+)/mbox/$"), "covers", "mbox"),
    (re.compile(r"^/comment/([0-9]+)/$"), "comments", "web"),
]

#: Downloads built from the mirror (Patchwork's ``<str:msgid>`` for patches,
#: ``<path:msgid>`` for covers).
_DOWNLOADS = [
    (re.compile(r"^/project/([^/]+)/patch/([^/]+)/(mbox|raw)/$"), "patches"),
    (re.compile(r"^/project/([^/]+)/cover/(.+)/(mbox)/$", re.S), "covers"),
]
_SERIES_MBOX = re.compile(r"^/series/([0-9]+)/mbox/$")
_BUNDLE_MBOX = re.compile(r"^/bundle/([^/]+)/([^/]+)/mbox/$")
#: Pages built from the mirror (see gateway.site.pages).
_PAGES = [
    (re.compile(r"^/()()$"), "index"),
    (re.compile(r"^/project/([^/]+)/()$"), "project"),
    (re.compile(r"^/project/([^/]+)/patch/([^/]+)/$"), "patches"),
    (re.compile(r"^/project/([^/]+)/cover/(.+)/$", re.S), "covers"),
    (re.compile(r"^/project/([^/]+)/list/()$"), "list"),
    # (project: the owner's username; msgid: the bundle's name)
    (re.compile(r"^/bundle/([^/]+)/([^/]+)/$"), "bundle"),
]

#: Site paths only upstream serves (logins, settings, administration...):
#: redirected there.
_SITE_UPSTREAM = re.compile(
    r"^/(?:"
    r"project/[^/]+/(?:bundles/|pwclientrc/)"
    r"|user/(?:todo/(?:[^/]+/)?|bundles/|link/|unlink/[^/]+/|password-change/(?:done/)?"
    r"|password-reset/(?:mail-sent/|[^/]+/[^/]+/)?|login/|logout/|generate-token/"
    r"|bundle/[^/]+/(?:mbox/)?)?"
    r"|register/|confirm/[0-9a-f]+/|submitter/|delegate/|mail/(?:optout/|optin/)?"
    r"|about/|help/(?:about/|pwclient/)?|admin/.*|static/.+"
    r")$",
    re.S,
)


def resolve_site(path: str) -> SiteRoute | None:
    if path == "/xmlrpc/":
        return SiteRoute("forward")
    for pattern, resource, suffix in _SITE_BY_ID:
        m = pattern.match(path)
        if m:
            return SiteRoute("redirect-by-id", resource, int(m.group(1)), suffix)
    for pattern, resource in _DOWNLOADS:
        m = pattern.match(path)
        if m:
            return SiteRoute("download", resource, None, m.group(3), m.group(1), m.group(2))
    m = _SERIES_MBOX.match(path)
    if m:
        return SiteRoute("download", "series", int(m.group(1)), "mbox")
    m = _BUNDLE_MBOX.match(path)
    if m:  # (project: the owner's username; msgid: the bundle's name)
        return SiteRoute("download", "bundles", None, "mbox", m.group(1), m.group(2))
    for pattern, resource in _PAGES:
        m = pattern.match(path)
        if m:
            return SiteRoute("page", resource, None, "web", m.group(1), m.group(2))
    if _SITE_UPSTREAM.match(path):
        return SiteRoute("upstream")
    return None


_SITE_TEMPLATES = {
    ("redirect-by-id", "patches"): "/patch/{id}/",
    ("redirect-by-id", "covers"): "/cover/{id}/",
    ("redirect-by-id", "comments"): "/comment/{id}/",
    ("download", "patches"): "/project/{project}/patch/{msgid}/",
    ("download", "covers"): "/project/{project}/cover/{msgid}/",
    ("download", "series"): "/series/{id}/",
    ("download", "bundles"): "/bundle/{owner}/{name}/",
    ("page", "patches"): "/project/{project}/patch/{msgid}/",
    ("page", "covers"): "/project/{project}/cover/{msgid}/",
    ("page", "list"): "/project/{project}/list/",
    ("page", "index"): "/",
    ("page", "project"): "/project/{project}/",
    ("page", "bundle"): "/bundle/{owner}/{name}/",
}


def site_template(site: SiteRoute) -> str:
    """The site route's URL template: a bounded metrics label."""
    if site.kind == "forward":
        return "/xmlrpc/"
    if site.kind == "upstream":
        return "site page (redirected upstream)"
    base = _SITE_TEMPLATES.get((site.kind, site.resource or ""), "site")
    if site.suffix in ("mbox", "raw"):
        return f"{base}{site.suffix}/"
    return base


def resolves(path: str) -> bool:
    return resolve_api(path) is not None or resolve_site(path) is not None
