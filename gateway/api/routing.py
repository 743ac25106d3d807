"""Which Patchwork URL a path is, following ``patchwork/urls.py``.

API paths are ``/api/[<version>/]<endpoint>``; the comment endpoints only
exist from 1.1 (lists) and 1.3 (details).  Like Patchwork, the version
pattern's dots match any character (``/api/1x4/`` is served).  Non-API
paths are the site's pages and downloads.  Anything else is a 404; a path
that would resolve with a trailing slash is redirected to it (Django's
``APPEND_SLASH``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mirror.model import Resource
from mirror.resources import INDEX, RESOURCES

_API = re.compile(r"^/api/(?:(?P<version>1[^/][0-4])/)?(?P<rest>.*)$", re.S)
_SINCE_1_1 = re.compile(r"1.[1-4]", re.S)
_SINCE_1_3 = re.compile(r"1.[34]", re.S)


@dataclass(frozen=True)
class ApiRoute:
    kind: str  # "index", "list" or "detail"
    version: str | None
    resource: Resource | None = None
    parent_id: int | None = None
    key: str | None = None  # the detail's id (a link name for projects)


_TOP = "|".join(INDEX)
_API_PATTERNS: list[tuple[re.Pattern[str], str, str | None, re.Pattern[str] | None]] = [
    # (pattern, kind, resource name or None for group 1, version gate)
    (re.compile(rf"^({_TOP})/$"), "list", None, None),
    (re.compile(r"^(users|people|patches|covers|series|bundles)/([0-9]+)/$"), "detail", None, None),
    (re.compile(r"^(projects)/([^/]+)/$"), "detail", None, None),
    (re.compile(r"^patches/([0-9]+)/checks/$"), "list", "checks", None),
    (re.compile(r"^patches/([0-9]+)/checks/([0-9]+)/$"), "detail", "checks", None),
    (re.compile(r"^patches/([0-9]+)/comments/$"), "list", "patch_comments", _SINCE_1_1),
    (re.compile(r"^covers/([0-9]+)/comments/$"), "list", "cover_comments", _SINCE_1_1),
    (re.compile(r"^patches/([0-9]+)/comments/([0-9]+)/$"), "detail", "patch_comments", _SINCE_1_3),
    (re.compile(r"^covers/([0-9]+)/comments/([0-9]+)/$"), "detail", "cover_comments", _SINCE_1_3),
]


#: The label of a request no route claimed (unknown paths, bad Hosts).
UNMATCHED = "unmatched"

_NESTED = {"checks": "patches", "patch_comments": "patches", "cover_comments": "covers"}


def api_template(route: ApiRoute) -> str:
    """The route's URL template: a bounded metrics label."""
    res = route.resource
    if res is None:
        return "/api/{version}/"
    name = res.name
    parent = _NESTED.get(name)
    if parent is not None:
        leaf = "checks" if name == "checks" else "comments"
        path = f"/api/{{version}}/{parent}/{{parent_id}}/{leaf}/"
    else:
        path = f"/api/{{version}}/{name}/"
    return path + "{id}/" if route.kind == "detail" else path


def resolve_api(path: str) -> ApiRoute | None:
    match = _API.match(path)
    if not match:
        return None
    version, rest = match.group("version"), match.group("rest")
    if rest == "":
        return ApiRoute("index", version)
    for pattern, kind, name, gate in _API_PATTERNS:
        m = pattern.match(rest)
        if not m:
            continue
        if gate is not None and version is not None and not gate.fullmatch(version):
            return None
        if name is None:  # top-level resource named by the path
            resource = RESOURCES[m.group(1)]
            if kind == "detail" and resource.name == "events":
                return None
            key = m.group(2) if kind == "detail" else None
            return ApiRoute(kind, version, resource, None, key)
        parent_id = int(m.group(1))
        key = m.group(2) if kind == "detail" else None
        return ApiRoute(kind, version, RESOURCES[name], parent_id, key)
    return None


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
