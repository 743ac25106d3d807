"""Patchwork's REST reads (``patchwork/api/``, on Django REST framework).

Objects are rendered at request time from the rows, byte for byte as
Patchwork renders them (key order, nulls, dates, the ``Link`` header).
Each version shows what Patchwork's serializers show it
(``versioned_fields``, see :data:`DETAIL_SINCE` and :data:`EMBEDDED_SINCE`,
for details, list items and embedded objects alike), lists comment
events from 1.3 only, and ignores the filters its filter sets add later
(``hash`` and ``msgid`` of patches, ``actor`` of events: from 1.2, see
:data:`FILTERS_SINCE`).  Queries follow Patchwork's filters
(``patchwork/api/filters.py``), DRF's search and ordering, and
Patchwork's pagination (``patchwork/api/base.py``), down to their
failures: the 500s of invalid model fields, the empty list of an invalid
filter value.  ``tests/test_fake_patchwork.py`` checks every API read of
the crawl, each again at 1.0 to 1.3, by every recorded identity, and
queries against recorded answers of real Patchwork.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import orjson

from tests.fake.api import (
    _URL_SAFE,
    NOT_AUTHENTICATED,
    PLACEHOLDER,
    VERSION,
    _Ctx,
    _has_version,
    _Http,
    _Route,
    _ServerError,
)
from tests.fake.state import (
    CHECK_STATES,
    DEFAULT_SETTINGS,
    DEFAULT_STATES,
    EVENT_PAYLOADS,
    MODELS,
    PARENTS,
    RESOURCES,
    State,
    Store,
    _ilower,
    _names,
    _parse_date,
)

DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 250

_SUBMISSION = "id url web_url msgid list_archive_url date name mbox"
_COMMENT = "id url web_url msgid list_archive_url date"

#: Embedded ("nested") shapes: projections of the full objects.
EMBEDDED = {
    "projects": _names(
        "id url name link_name list_id list_email web_url scm_url webscm_url"
        " list_archive_url list_archive_url_format commit_url_format"
    ),
    "people": _names("id url name email"),
    "users": _names("id url username first_name last_name email"),
    "patches": _names(_SUBMISSION),
    "covers": _names(_SUBMISSION),
    "series": _names("id url web_url date name version mbox"),
    "checks": _names("id url date state target_url context"),
    "patch-comments": _names(_COMMENT),
    "cover-comments": _names(_COMMENT),
}

#: Detail key orders of Patchwork 3.x at API 1.4; the crawl's own win.
DEFAULT_KEYS = {
    "projects": _names(
        "id url name link_name list_id list_email web_url scm_url webscm_url maintainers"
        " subject_match list_archive_url list_archive_url_format commit_url_format"
        " show_dependencies"
    ),
    "people": _names("id url name email user"),
    "users": _names("id url username first_name last_name email"),
    "patches": _names(
        "id url web_url project msgid list_archive_url date name commit_ref pull_url state"
        " archived hash submitter delegate mbox series comments check checks tags related"
        " headers content diff prefixes"
    ),
    "covers": _names(
        "id url web_url project msgid list_archive_url date name submitter mbox series"
        " comments headers content"
    ),
    "series": _names(
        "id url web_url project name date submitter version total received_total"
        " received_all mbox cover_letter patches"
    ),
    "bundles": _names("id url web_url project name owner patches public mbox"),
    "patch-comments": _names(
        "id url web_url msgid list_archive_url date subject submitter content headers addressed"
    ),
    "checks": _names("id url user date state target_url context description"),
}
DEFAULT_KEYS["cover-comments"] = DEFAULT_KEYS["patch-comments"]

#: Fields a list item lacks compared with the detail.
LIST_EXCLUDES = {
    "patches": ("headers", "content", "diff", "prefixes"),
    "covers": ("headers", "content"),
}

EVENT_KEYS = ("id", "category", "project", "date", "actor", "payload")

INDEX_KEYS = ("projects", "users", "people", "patches", "covers", "series", "events", "bundles")

#: Fields a serializer drops below the version that added them
#: (``versioned_fields`` of Patchwork's serializers): details...
DETAIL_SINCE: dict[str, dict[str, tuple[str, ...]]] = {
    "patches": {"1.1": ("comments", "web_url"), "1.2": ("list_archive_url", "related")},
    "covers": {"1.1": ("web_url", "mbox", "comments"), "1.2": ("list_archive_url",)},
    "series": {"1.1": ("web_url",), "1.4": ("dependencies", "dependents")},
    "projects": {
        "1.1": ("subject_match",),
        "1.2": ("list_archive_url", "list_archive_url_format", "commit_url_format"),
        "1.4": ("show_dependencies",),
    },
    "bundles": {"1.1": ("web_url",)},
    "patch-comments": {
        "1.1": ("web_url",),
        "1.2": ("list_archive_url",),
        "1.3": ("addressed", "url"),
    },
}
DETAIL_SINCE["cover-comments"] = DETAIL_SINCE["patch-comments"]
#: ... and embedded objects.
EMBEDDED_SINCE: dict[str, dict[str, tuple[str, ...]]] = {
    "projects": {"1.2": ("list_archive_url", "list_archive_url_format", "commit_url_format")},
    "patches": {"1.1": ("web_url",), "1.2": ("list_archive_url",)},
    "covers": {"1.1": ("web_url", "mbox"), "1.2": ("list_archive_url",)},
    "series": {"1.1": ("web_url",)},
    "patch-comments": {"1.1": ("web_url",), "1.2": ("list_archive_url",), "1.3": ("url",)},
}
EMBEDDED_SINCE["cover-comments"] = EMBEDDED_SINCE["patch-comments"]


#: ... and filters (``versioned_fields`` of Patchwork's filter sets): a
#: parameter is ignored below the version that added it.
FILTERS_SINCE: dict[str, dict[str, tuple[str, ...]]] = {
    "patches": {"1.2": ("hash", "msgid")},
    "events": {"1.2": ("actor",)},
}
#: Events ``/events/`` lists from API 1.3 only.
COMMENT_EVENTS = frozenset({"cover-comment-created", "patch-comment-created"})


@functools.cache
def _dropped(embedded: bool, res: str, version: str) -> frozenset[str]:
    """The fields of ``res`` a client of ``version`` does not see."""
    table = (EMBEDDED_SINCE if embedded else DETAIL_SINCE).get(res, {})
    return frozenset(
        name for since, names in table.items() if not _has_version(version, since) for name in names
    )


def _field(name: str, obj: dict[str, Any]) -> Any:
    return obj.get(name)


def _iexact(expected: str, value: str | None) -> bool:
    """Django's ``iexact`` on SQLite (``LIKE``: ASCII case folding)."""
    return value is not None and _ilower(value) == _ilower(expected)


_SMART_SPLIT = re.compile(
    r"""((?:[^\s'"]*(?:(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')[^\s'"]*)+)|\S+)"""
)


def _search_terms(text: str) -> list[str]:
    """DRF's ``search_smart_split``: quoted phrases whole, the rest split on commas."""
    terms = []
    for match in _SMART_SPLIT.finditer(text):
        term = match[0].strip(",")
        if term.startswith(('"', "'")) and term[0] == term[-1]:
            quote_char = term[0]
            terms.append(term[1:-1].replace("\\" + quote_char, quote_char).replace("\\\\", "\\"))
        else:
            terms.extend(sub.strip() for sub in term.split(",") if sub)
    return terms


class _Invalid(Exception):
    """A filter value Patchwork rejects: the list comes out empty."""


def _link_url(base: str, query: str, page: int | None) -> str:
    """DRF's ``replace_query_param`` / ``remove_query_param`` on ``page``."""
    items = parse_qs(query, keep_blank_values=True)
    if page is None:
        items.pop("page", None)
    else:
        items["page"] = [str(page)]
    encoded = urlencode(sorted(items.items()), doseq=True)
    return f"{base}?{encoded}" if encoded else base


def _link_header(base: str, query: str, number: int, num_pages: int) -> str:
    links = []
    if number < num_pages:
        links.append(f'<{_link_url(base, query, number + 1)}>; rel="next"')
    if number > 1:
        prev = None if number == 2 else number - 1
        links.append(f'<{_link_url(base, query, prev)}>; rel="prev"')
    links.append(f'<{_link_url(base, query, 1)}>; rel="first"')
    links.append(f'<{_link_url(base, query, num_pages)}>; rel="last"')
    return ", ".join(links)


class Reads(Store):
    """Rendering, queries and the read views."""

    def __init__(self, states: Iterable[State] = DEFAULT_STATES) -> None:
        super().__init__(states)
        self._keys: dict[str, tuple[str, ...]] = {}
        self._list_keys: dict[str, tuple[str, ...]] = {}
        self._fields = self._field_renderers()

    # ------------------------------------------------------------------
    # Rendering

    def _field_renderers(self) -> dict[str, dict[str, Callable[[dict[str, Any], _Ctx], Any]]]:
        """Per resource, how each derived or embedding field renders."""
        o = self._objects

        def ref(res: str, key: str) -> Callable[[dict[str, Any], _Ctx], Any]:
            def render(obj: dict[str, Any], ctx: _Ctx) -> Any:
                target = obj[key]
                return None if target is None else self._embed(res, o[res][target], ctx)

            return render

        def self_url(path: str) -> Callable[[dict[str, Any], _Ctx], str]:
            return lambda obj, ctx: f"{ctx.api}/{path}/{obj['id']}/{ctx.suffix}"

        def submission_web(kind: str) -> Callable[[dict[str, Any], _Ctx], str]:
            def render(obj: dict[str, Any], ctx: _Ctx) -> str:
                linkname = o["projects"][obj["project"]]["link_name"]
                msgid = obj["msgid"].strip("<>").replace("/", "%2F")
                path = f"project/{linkname}/{kind}/{msgid}/"
                return f"{ctx.origin}/{quote(path, _URL_SAFE)}"

            return render

        def archive(project_of: Callable[[dict[str, Any]], int]) -> Callable[..., str | None]:
            def render(obj: dict[str, Any], ctx: _Ctx) -> str | None:
                fmt = o["projects"][project_of(obj)]["list_archive_url_format"]
                if not fmt or not obj["msgid"]:
                    return None
                return str(fmt.format(obj["msgid"].strip("<>")))

            return render

        def embed_list(res: str, ids: Callable[[dict[str, Any]], Iterable[int]]) -> Any:
            def render(obj: dict[str, Any], ctx: _Ctx) -> list[dict[str, Any]]:
                return [self._embed(res, o[res][i], ctx) for i in ids(obj)]

            return render

        def by_date(ids: Iterable[int]) -> list[int]:
            """Patchwork's ``Patch`` model orders by date (ties: by id here)."""
            return sorted(ids, key=lambda i: (o["patches"][i]["_date"], i))

        def comment_fields(parent_res: str, parent_key: str) -> dict[str, Any]:
            return {
                "url": lambda obj, ctx: (
                    f"{ctx.api}/{parent_res}/{obj[parent_key]}/comments/{obj['id']}/{ctx.suffix}"
                ),
                "web_url": lambda obj, ctx: f"{ctx.origin}/comment/{obj['id']}/",
                "list_archive_url": archive(lambda obj: o[parent_res][obj[parent_key]]["project"]),
                "submitter": ref("people", "submitter"),
            }

        patch_web = submission_web("patch")
        cover_web = submission_web("cover")

        def bundle_web(obj: dict[str, Any], ctx: _Ctx) -> str:
            owner = quote(o["users"][obj["owner"]]["username"], _URL_SAFE)
            return f"{ctx.origin}/bundle/{owner}/{quote(obj['name'], _URL_SAFE)}/"

        return {
            "projects": {
                "url": self_url("projects"),
                "maintainers": embed_list("users", lambda obj: obj["maintainers"]),
            },
            "people": {"url": self_url("people"), "user": ref("users", "user")},
            "users": {"url": self_url("users")},
            "patches": {
                "url": self_url("patches"),
                "web_url": patch_web,
                "project": ref("projects", "project"),
                "list_archive_url": archive(lambda obj: obj["project"]),
                "submitter": ref("people", "submitter"),
                "delegate": ref("users", "delegate"),
                "mbox": lambda obj, ctx: patch_web(obj, ctx) + "mbox/",
                "series": embed_list(
                    "series", lambda obj: [] if obj["_series"] is None else [obj["_series"]]
                ),
                "comments": lambda obj, ctx: f"{ctx.origin}/api/patches/{obj['id']}/comments/",
                "check": lambda obj, ctx: self._combined_check(obj["id"]),
                "checks": lambda obj, ctx: f"{ctx.origin}/api/patches/{obj['id']}/checks/",
                "related": embed_list("patches", lambda obj: by_date(self._related(obj))),
            },
            "covers": {
                "url": self_url("covers"),
                "web_url": cover_web,
                "project": ref("projects", "project"),
                "list_archive_url": archive(lambda obj: obj["project"]),
                "submitter": ref("people", "submitter"),
                "mbox": lambda obj, ctx: cover_web(obj, ctx) + "mbox/",
                "series": embed_list(
                    "series", lambda obj: [] if obj["_series"] is None else [obj["_series"]]
                ),
                "comments": lambda obj, ctx: f"{ctx.origin}/api/covers/{obj['id']}/comments/",
            },
            "series": {
                "url": self_url("series"),
                "web_url": lambda obj, ctx: (
                    f"{ctx.origin}/project/{o['projects'][obj['project']]['link_name']}"
                    f"/list/?series={obj['id']}"
                ),
                "project": ref("projects", "project"),
                "submitter": ref("people", "submitter"),
                "received_total": lambda obj, ctx: len(self._series_patches.get(obj["id"], [])),
                "received_all": lambda obj, ctx: (
                    obj["total"] <= len(self._series_patches.get(obj["id"], []))
                ),
                "mbox": lambda obj, ctx: f"{ctx.origin}/series/{obj['id']}/mbox/",
                "cover_letter": ref("covers", "cover_letter"),
                "patches": embed_list(
                    "patches", lambda obj: by_date(self._series_patches.get(obj["id"], []))
                ),
                "dependencies": lambda obj, ctx: [
                    f"{ctx.api}/series/{i}/{ctx.suffix}"
                    for i in sorted(obj.get("dependencies", []))
                ],
                "dependents": lambda obj, ctx: [
                    f"{ctx.api}/series/{s['id']}/{ctx.suffix}"
                    for s in sorted(o["series"].values(), key=lambda s: s["id"])
                    if obj["id"] in s.get("dependencies", [])
                ],
            },
            "bundles": {
                "url": self_url("bundles"),
                "web_url": bundle_web,
                "project": ref("projects", "project"),
                "owner": ref("users", "owner"),
                "patches": embed_list("patches", lambda obj: by_date(obj["patches"])),
                "mbox": lambda obj, ctx: bundle_web(obj, ctx) + "mbox/",
            },
            "patch-comments": comment_fields("patches", "_patch"),
            "cover-comments": comment_fields("covers", "_cover"),
            "checks": {
                "url": lambda obj, ctx: (
                    f"{ctx.api}/patches/{obj['_patch']}/checks/{obj['id']}/{ctx.suffix}"
                ),
                "user": ref("users", "user"),
            },
        }

    def _render_keys(
        self, res: str, obj: dict[str, Any], keys: Iterable[str], ctx: _Ctx
    ) -> dict[str, Any]:
        fields = self._fields[res]
        return {k: fields[k](obj, ctx) if k in fields else obj.get(k) for k in keys}

    def _embed(self, res: str, obj: dict[str, Any], ctx: _Ctx) -> dict[str, Any]:
        keys = EMBEDDED[res]
        if ctx.version != VERSION:
            dropped = _dropped(True, res, ctx.version)
            keys = tuple(k for k in keys if k not in dropped)
        return self._render_keys(res, obj, keys, ctx)

    def _render_obj(
        self,
        res: str,
        obj: dict[str, Any],
        ctx: _Ctx,
        detail: bool,
        viewer: int | None = None,
        hidden: set[str] | None = None,
    ) -> dict[str, Any]:
        """``hidden``: fields a list's shared serializer has dropped so far."""
        if res == "events":
            return self._render_event(obj, ctx)
        keys = self._keys[res] if detail else self._list_keys[res]
        hidden = set() if hidden is None else hidden
        if res == "series" and not self._objects["projects"][obj["project"]]["show_dependencies"]:
            # SeriesSerializer deletes these from its fields: for this series
            # and, as a list shares one serializer, for every later one.
            hidden.update(("dependencies", "dependents"))
        if ctx.version != VERSION:
            hidden = hidden | _dropped(False, res, ctx.version)
        if hidden:
            keys = tuple(k for k in keys if k not in hidden)
        data = self._render_keys(res, obj, keys, ctx)
        if res == "users" and detail and viewer == obj["id"] and _has_version(ctx.version, "1.2"):
            data["settings"] = dict(obj.get("settings") or DEFAULT_SETTINGS)
        return data

    def _render_event(self, event: dict[str, Any], ctx: _Ctx) -> dict[str, Any]:
        o = self._objects
        payload: dict[str, Any] = {}
        comments = "patch-comments" if event["category"].startswith("patch") else "cover-comments"
        for key in EVENT_PAYLOADS[event["category"]]:
            value = event.get(key)
            if key.endswith("_state") or key.endswith("_relation") or value is None:
                payload[key] = value
            elif key.endswith("_delegate"):
                payload[key] = self._embed("users", o["users"][value], ctx)
            else:
                res = {
                    "patch": "patches",
                    "series": "series",
                    "cover": "covers",
                    "check": "checks",
                    "comment": comments,
                }[key]
                payload[key] = self._embed(res, o[res][value], ctx)
        actor = event["actor"]
        return {
            "id": event["id"],
            "category": event["category"],
            "project": self._embed("projects", o["projects"][event["project"]], ctx),
            "date": event["date"],
            "actor": None if actor is None else self._embed("users", o["users"][actor], ctx),
            "payload": payload,
        }

    def _related(self, patch: dict[str, Any]) -> list[int]:
        rid = patch["_relation"]
        if rid is None:
            return []
        return sorted(self._relations[rid] - {patch["id"]})

    def _combined_check(self, patch_id: int) -> str:
        """Patchwork's rule: each (user, context)'s latest check counts."""
        latest: dict[tuple[int, str], dict[str, Any]] = {}
        for cid in self._children["checks"].get(patch_id, []):
            check = self._objects["checks"][cid]
            key = (check["user"], check["context"])
            if key not in latest or not latest[key]["_date"] > check["_date"]:
                latest[key] = check
        states = {c["state"] for c in latest.values()}
        for state in ("fail", "warning", "pending"):
            if state in states:
                return state
        return "success" if states else "pending"

    @staticmethod
    def _plain(data: Any) -> Any:
        """A deep copy the caller may keep and change."""
        return orjson.loads(orjson.dumps(data))

    def render(
        self,
        resource: str,
        obj_id: int,
        *,
        detail: bool = True,
        origin: str = PLACEHOLDER,
        viewer: int | bool | None = True,
    ) -> dict[str, Any]:
        """One object as the API serves it (``detail`` or as a list item).

        ``viewer`` is the user asking (it decides a user's ``settings``);
        True: the crawl's identity, None: anonymous.
        """
        with self._lock:
            obj = self._objects[resource][obj_id]
            who = self.identity if viewer is True else viewer or None
            return self._plain(self._render_obj(resource, obj, _Ctx.of(origin), detail, who))

    def ids(self, resource: str) -> list[int]:
        """The ids of a resource's objects (all of them, ascending)."""
        with self._lock:
            return sorted(self._objects[resource])

    def get(self, resource: str, obj_id: int) -> dict[str, Any] | None:
        """The stored object (references as ids), or None; a copy."""
        with self._lock:
            obj = self._objects[resource].get(obj_id)
            return (
                None if obj is None else self._plain({k: v for k, v in obj.items() if k[0] != "_"})
            )

    def snapshot(
        self, origin: str = PLACEHOLDER, viewer: int | bool | None = True
    ) -> dict[str, dict[int, dict[str, Any]]]:
        """Every object of every resource in its detail form, by id.

        As ``viewer`` sees them (True: the crawl's identity, None: anonymous):
        bundles it may not see are left out.  Events are keyed by id too.
        """
        with self._lock:
            ctx = _Ctx.of(origin)
            viewer = self.identity if viewer is True else viewer or None
            return {
                res: {
                    i: self._plain(self._render_obj(res, obj, ctx, True, viewer))
                    for i, obj in sorted(self._objects[res].items())
                    if res != "bundles" or self._visible_bundle(obj, viewer)
                }
                for res in RESOURCES
            }

    def events(self, origin: str = PLACEHOLDER) -> list[dict[str, Any]]:
        """The events as ``/events/`` lists them: newest first."""
        with self._lock:
            ctx = _Ctx.of(origin)
            ordered = self._default_order("events", list(self._objects["events"].values()))
            return self._plain([self._render_event(e, ctx) for e in ordered])

    # ------------------------------------------------------------------
    # The read views: an index, a detail, a list's page

    def _read(
        self,
        route: _Route,
        auth: str | None,
        query: dict[str, list[str]],
        raw_query: str,
        ctx: _Ctx,
        base: str,
    ) -> tuple[int, Any, dict[str, str]]:
        """A read (GET, HEAD): (status, JSON body, more headers).

        ``query``: the parameters (each with its values, in order),
        ``raw_query`` as sent; ``base``: the URL of the ``Link`` header's pages.
        """
        user = self._identity(auth)
        if route.kind == "index":
            return 200, {k: f"{ctx.api}/{k}/{ctx.suffix}" for k in INDEX_KEYS}, {}
        if route.resource in ("people", "users") and user is None:
            raise _Http(403, NOT_AUTHENTICATED)
        if route.kind == "detail":
            obj = self._lookup(route, user)
            return 200, self._render_obj(route.resource, obj, ctx, True, user), {}
        items = self._list_items(route, user)
        # Filters a version's filter set leaves out are ignored.
        dropped = FILTERS_SINCE.get(route.resource, {})
        query = {
            k: v
            for k, v in query.items()
            if not any(
                k in names and not _has_version(route.version, since)
                for since, names in dropped.items()
            )
        }
        try:
            items = self._filter(route.resource, items, query)
        except _Invalid:
            items = []
        items = self._search(route.resource, items, query)
        count = len(items)  # before order=check joins a row per check
        items = self._order(route.resource, items, query)
        number, size, num_pages = self._page(query, count)
        # Django's Paginator cuts the last page at the count.
        page = items[(number - 1) * size : min(number * size, count)]
        hidden: set[str] = set()
        body = [self._render_obj(route.resource, o, ctx, False, user, hidden) for o in page]
        link = _link_header(base, raw_query, number, num_pages)
        return 200, body, {"Link": link}

    def _list_items(self, route: _Route, user: int | None) -> list[dict[str, Any]]:
        res = route.resource
        if res in PARENTS:
            parent_res = PARENTS[res][0]
            if route.parent not in self._objects[parent_res]:
                raise _Http(404, f"No {MODELS[parent_res]} matches the given query.")
            ids = self._children[res].get(route.parent, [])
            return [self._objects[res][i] for i in ids]
        items = list(self._objects[res].values())
        if res == "bundles":
            items = [b for b in items if self._visible_bundle(b, user)]
        elif res == "events" and not _has_version(route.version, "1.3"):
            # Comment events point at comment details, which came with 1.3.
            items = [e for e in items if e["category"] not in COMMENT_EVENTS]
        return items

    def _lookup(self, route: _Route, user: int | None) -> dict[str, Any]:
        res = route.resource
        objects = self._objects[res]
        missing = _Http(404, f"No {MODELS[res]} matches the given query.")
        assert route.obj_id is not None
        if res in PARENTS:
            parent_res = PARENTS[res][0]
            if route.parent not in self._objects[parent_res]:
                raise _Http(404, f"No {MODELS[parent_res]} matches the given query.")
        if res == "projects":
            try:
                number = int(route.obj_id)
            except ValueError:
                number = None
            if number in objects:
                return objects[number]
            for obj in objects.values():
                if obj["link_name"] == route.obj_id:
                    return obj
            raise missing
        found = objects.get(int(route.obj_id))
        if found is None:
            raise missing
        obj = found
        if res in PARENTS and obj[PARENTS[res][1]] != route.parent:
            raise missing
        if res == "bundles" and not self._visible_bundle(obj, user):
            raise missing
        return obj

    @staticmethod
    def _page(query: dict[str, list[str]], count: int) -> tuple[int, int, int]:
        """DRF's PageNumberPagination: (page, per_page, number of pages)."""
        size = DEFAULT_PER_PAGE
        if "per_page" in query:
            try:
                value = int(query["per_page"][-1])
            except ValueError:
                value = 0
            if value > 0:
                size = min(value, MAX_PER_PAGE)
        num_pages = max(1, -(-count // size))
        raw = query.get("page", [""])[-1] or "1"
        if raw == "last":
            return num_pages, size, num_pages
        try:
            number = int(raw)
        except ValueError:
            raise _Http(404, "Invalid page.") from None
        if number < 1 or number > num_pages:
            raise _Http(404, "Invalid page.")
        return number, size, num_pages

    # ------------------------------------------------------------------
    # Queries: filters, search, ordering

    def _resolve(self, kind: str, value: str) -> int:
        """A filter value as Patchwork's choice fields look it up."""
        o = self._objects
        try:
            number: int | None = int(value)
        except ValueError:
            number = None
        if kind == "states":
            if number is not None:
                found = [s.id for s in self.states if s.id == number]
            else:
                name = _ilower(" ".join(value.split("-")))
                found = [s.id for s in self.states if _ilower(s.name) == name]
            if not found:
                raise _Invalid
            return found[0]
        alternate = {"projects": "link_name", "people": "email", "users": "username"}.get(kind)
        if number is not None:
            if number in o[kind]:
                return number
            raise _Invalid
        if alternate is None:
            raise _Invalid
        for obj_id, obj in o[kind].items():
            if obj.get(alternate) is not None and _ilower(obj[alternate]) == _ilower(value):
                return obj_id
        raise _Invalid

    def _filters(self, res: str) -> dict[str, tuple[str, Any]]:
        """Each filter parameter: (kind, how to read the object's value)."""
        since = ("since", None)
        before = ("before", None)
        if res == "patches":
            return {
                "project": ("projects", "project"),
                "series": ("series", "_series"),
                "submitter": ("people", "submitter"),
                "delegate": ("users", "delegate"),
                "state": ("states", lambda obj: self.state(obj["state"]).id),
                "archived": ("bool", "archived"),
                "hash": ("iexact", "hash"),
                "msgid": ("msgid", "msgid"),
                "since": since,
                "before": before,
            }
        if res == "covers":
            return {
                "project": ("projects", "project"),
                "series": ("cover-series", "_series"),
                "submitter": ("people", "submitter"),
                "msgid": ("msgid", "msgid"),
                "since": since,
                "before": before,
            }
        if res == "series":
            return {
                "submitter": ("people", "submitter"),
                "project": ("projects", "project"),
                "since": since,
                "before": before,
            }
        if res == "bundles":
            return {
                "project": ("projects", "project"),
                "owner": ("users", "owner"),
                "public": ("bool", "public"),
            }
        if res == "checks":
            return {
                "user": ("users", "user"),
                "state": ("check-state", lambda obj: CHECK_STATES[obj["state"]]),
                "context": ("exact", "context"),
                "since": since,
                "before": before,
            }
        if res == "events":
            return {
                "project": ("projects", "project"),
                "category": ("category", "category"),
                "series": ("series", "series"),
                "patch": ("patches", "patch"),
                "cover": ("covers", "cover"),
                # Not declared: django-filter's own single choice of a pk.
                "actor": ("pk:users", "actor"),
                "since": since,
                "before": before,
            }
        return {}

    def _filter(
        self, res: str, items: list[dict[str, Any]], query: dict[str, list[str]]
    ) -> list[dict[str, Any]]:
        """django-filter: validate every value (any invalid one empties the
        list), then filter (where Patchwork's query fails: a 500)."""
        tests: list[tuple[Callable[[dict[str, Any]], Any], Callable[[Any], bool]]] = []
        fails = False
        for param, (kind, field) in self._filters(res).items():
            values = query.get(param)
            if values is None:
                continue
            last = values[-1]
            get = field if callable(field) else functools.partial(_field, field)
            if kind in ("projects", "people", "users", "states", "series", "patches", "covers"):
                tests.append((get, {self._resolve(kind, v) for v in values}.__contains__))
            elif kind == "cover-series":
                # Patchwork checks the values against projects, then fails.
                for value in values:
                    self._resolve("projects", value)
                fails = True
            elif kind == "bool":
                flag = {"1": True, "0": False, "true": True, "false": False}.get(last.lower())
                if flag is not None:
                    tests.append((get, functools.partial(operator.is_, flag)))
            elif not last:
                continue
            elif kind.startswith("pk:"):
                try:
                    number = int(last)
                except ValueError:
                    raise _Invalid from None
                if number not in self._objects[kind[3:]]:
                    raise _Invalid
                tests.append((get, functools.partial(operator.eq, number)))
            elif kind == "iexact":
                tests.append((get, functools.partial(_iexact, last)))
            elif kind in ("exact", "msgid", "category"):
                if kind == "category" and last not in EVENT_PAYLOADS:
                    raise _Invalid
                wanted = f"<{last}>" if kind == "msgid" else last
                tests.append((get, functools.partial(operator.eq, wanted)))
            elif kind == "check-state":
                if last not in {str(v) for v in CHECK_STATES.values()}:
                    raise _Invalid
                code = int(last)
                tests.append((get, functools.partial(operator.eq, code)))
            elif kind in ("since", "before"):
                try:
                    bound = _parse_date(last.strip())
                except ValueError:
                    raise _Invalid from None
                if bound.tzinfo is not None:
                    # Naive database, aware value: Django's SQLite backend fails.
                    fails = True
                else:
                    compare = operator.le if kind == "since" else operator.gt
                    tests.append((operator.itemgetter("_date"), functools.partial(compare, bound)))
        if fails:
            raise _ServerError
        for get, accept in tests:
            items = [obj for obj in items if accept(get(obj))]
        return items

    SEARCH = {
        "people": ("name", "email"),
        "users": ("username", "first_name", "last_name", "email"),
        "patches": ("name",),
        "covers": ("name",),
        "series": ("name",),
        "bundles": ("name",),
        # Not model fields: any search is a 500 upstream.
        "projects": None,
        "patch-comments": None,
        "cover-comments": None,
    }

    def _search(
        self, res: str, items: list[dict[str, Any]], query: dict[str, list[str]]
    ) -> list[dict[str, Any]]:
        terms = _search_terms(query.get("q", [""])[-1])
        if not terms or res not in self.SEARCH:
            return items
        fields = self.SEARCH[res]
        if fields is None:
            raise _ServerError
        for term in terms:
            needle = _ilower(term)
            items = [
                obj
                for obj in items
                if any(obj.get(f) is not None and needle in _ilower(obj[f]) for f in fields)
            ]
        return items

    def _orderings(self, res: str) -> dict[str, Callable[[dict[str, Any]], Any] | None]:
        """Valid ``order`` fields and their sort keys (None: a 500 upstream)."""
        o = self._objects

        def field(name: str) -> Callable[[dict[str, Any]], Any]:
            return lambda obj: obj.get(name)

        ident = field("id")
        date = field("_date")
        if res == "projects":
            return {"id": ident, "name": field("name"), "link_name": None, "list_id": None}
        if res == "people":
            return {"id": ident, "name": field("name"), "email": field("email")}
        if res == "users":
            return {"id": ident, "username": field("username"), "email": field("email")}
        if res == "patches":
            return {
                "id": ident,
                "name": field("name"),
                "project": lambda obj: o["projects"][obj["project"]]["link_name"],
                "date": date,
                "state": lambda obj: self.state(obj["state"]).ordering,
                "archived": field("archived"),
                "submitter": field("submitter"),
                "check": field("_check_row"),
            }
        if res == "covers":
            return {
                "id": ident,
                "name": field("name"),
                "date": date,
                "submitter": field("submitter"),
            }
        if res == "series":
            return {
                "id": ident,
                "name": field("name"),
                "date": date,
                "submitter": field("submitter"),
                "received_all": None,
            }
        if res == "bundles":
            return {"id": ident, "name": field("name"), "owner": field("owner")}
        if res == "events":
            return {"date": date}
        if res == "checks":
            return {
                "id": ident,
                "user": field("user"),
                "date": date,
                "state": lambda obj: CHECK_STATES[obj["state"]],
                "target_url": field("target_url"),
                "context": field("context"),
                "description": field("description"),
            }
        return {"id": ident, "subject": None, "date": date, "submitter": field("submitter")}

    def _default_order(self, res: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if res == "events":
            return sorted(items, key=lambda e: (e["_date"], e["id"]), reverse=True)
        return sorted(items, key=lambda obj: obj["id"])

    #: Orderings SQLite answers from a one-column index (a foreign key's,
    #: or the comments' (parent, date)): ties come out by row id in the
    #: direction of the sort.
    INDEXED: dict[str, frozenset[str]] = {
        "patches": frozenset({"submitter"}),
        "covers": frozenset({"submitter"}),
        "series": frozenset({"submitter"}),
        "bundles": frozenset({"owner"}),
        "checks": frozenset({"user"}),
        "patch-comments": frozenset({"submitter", "date"}),
        "cover-comments": frozenset({"submitter", "date"}),
    }

    def _ties(
        self, res: str, field: str, query: dict[str, list[str]]
    ) -> tuple[Callable[[dict[str, Any]], Any], bool]:
        """How ties of an ordering on ``field`` come out: a key, and whether
        it follows the sort's direction (an index scan) or stays ascending."""
        narrowed = any(p in query for p in ("project", "submitter", "series", "hash", "msgid"))
        if res == "patches" and field == "archived" and not narrowed:
            # patch_covering_idx: (archived, state, delegate, date, project, submitter, name)
            return (
                lambda obj: (
                    self.state(obj["state"]).id,
                    (0,) if obj["delegate"] is None else (1, obj["delegate"]),
                    obj["_date"],
                    obj["project"],
                    obj["submitter"],
                    obj["name"],
                    obj["id"],
                ),
                True,
            )
        if res == "covers" and field == "date":
            # cover_covering_idx: (date, project, submitter, name)
            return (lambda obj: (obj["project"], obj["submitter"], obj["name"], obj["id"]), True)
        return (lambda obj: obj["id"], field in self.INDEXED.get(res, frozenset()))

    def _order(
        self, res: str, items: list[dict[str, Any]], query: dict[str, list[str]]
    ) -> list[dict[str, Any]]:
        """DRF's OrderingFilter: valid terms of ``order``, else the default.

        Ties are broken as SQLite would in the common cases: by the index
        it reads (see :attr:`INDEXED`), else by ascending id.
        """
        valid = self._orderings(res)
        raw = query.get("order", [""])[-1]
        terms = [t.strip() for t in raw.split(",")] if raw else []
        terms = [t for t in terms if (t[1:] if t.startswith("-") else t) in valid]
        if not terms:
            return self._default_order(res, items)
        if any(valid[t.lstrip("-")] is None for t in terms):
            raise _ServerError
        if res == "patches" and any(t.lstrip("-") == "check" for t in terms):
            # A join on checks: a row per check (one with none), by check id.
            checks = self._children["checks"]
            items = [
                {**obj, "_check_row": cid}
                for obj in items
                for cid in (checks.get(obj["id"]) or (None,))
            ]
        tie_key, scanned = self._ties(res, terms[0].lstrip("-"), query)
        items = sorted(items, key=tie_key, reverse=scanned and terms[0].startswith("-"))
        for term in reversed(terms):
            key = valid[term.lstrip("-")]
            assert key is not None

            def sort_key(obj: dict[str, Any], key: Callable[..., Any] = key) -> tuple[Any, ...]:
                value = key(obj)
                return (0,) if value is None else (1, value)

            items.sort(key=sort_key, reverse=term.startswith("-"))
        return items
