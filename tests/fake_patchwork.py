"""A stateful fake Patchwork 3.x upstream serving its REST API from memory.

The replay upstream (``tests.support.replay_upstream``) can only answer
what was recorded; sync tests also need an upstream that *changes*.  This
fake is seeded from the recorded crawl and then changed by the tests the
way Patchwork changes: new series, comments, checks, state and delegate
changes, relations, archiving, renames, deletions.  It emits events where
Patchwork 3.x emits them (``patchwork/signals.py``) and nowhere else, and
cascades deletions as Patchwork's models do.

Objects are kept with references (ids) instead of embedded copies and are
rendered at request time, so an embedded object always shows the
referenced object's current values, as Patchwork renders them.  Rendering
reproduces the recording byte for byte (key order, nulls, dates, the
``Link`` header, ``Allow``), which ``tests/test_fake_patchwork.py`` checks
against every API read of the crawl.

Reads are served at every version Patchwork 3.x routes: ``/api/1.0/`` to
``/api/1.4/``, and the unversioned ``/api/`` as the latest.  Each version
shows what Patchwork's serializers show it (``versioned_fields``, see
:data:`DETAIL_SINCE` and :data:`EMBEDDED_SINCE`, for details, list items
and embedded objects alike), routes what its URL patterns route (comment
lists from 1.1, comment details from 1.3, see :data:`ROUTE_SINCE`), lists
comment events from 1.3 only, and ignores the filters its filter sets add
later (``hash`` and ``msgid`` of patches, ``actor`` of events: from 1.2,
see :data:`FILTERS_SINCE`); the test file checks every recorded read at
1.0 to 1.3, by every recorded identity.

Queries follow Patchwork's filters, search, orderings and pagination,
down to its failures (the 500s of invalid model fields, the empty list of
an invalid filter value); the test file checks them against recorded
answers of real Patchwork.

Downloads are built as Patchwork's views build them (``patchwork/views/``):
a patch's mbox (with ``?series=`` its series' patches before it) and raw
diff, a cover's, a series' and a bundle's mbox (a private bundle's to its
owner only, by token or password; a bundle's patches in the order they
were added, which for the crawl's bundles their recorded mboxes show), and
the old-style ``/patch/N/mbox/`` redirects; the test file checks every
recorded download byte for byte.

Writes through HTTP are answered as Patchwork 3.x answers them (DRF's
authentication, the views' permissions, validation and messages, the
serializers' answers at the request's version) and change the fake
through the same code as its mutation methods, so they emit the same
events: ``PATCH``/``PUT`` of patches, comments (API 1.3+), users and
projects, ``POST`` of checks, and ``POST``/``PATCH``/``PUT``/``DELETE`` of
bundles (API 1.2+), with JSON, URL-encoded or multipart bodies.
``tests/test_fake_writes.py`` replays a recorded sequence of writes to
real Patchwork and the reads that followed them.  Every request is kept,
headers and body included, in :attr:`FakePatchwork.received`.

``/xmlrpc/`` serves Patchwork's XML-RPC API (``patchwork/views/xmlrpc.py``,
see :class:`_XmlRpc`): its methods, filters, dict answers and faults, HTTP
Basic logins (``pw-<username>`` with ``tokens`` set), and writes
(``patch_set``, ``check_create``) through the mutation methods, so with
Patchwork's events; ``tests/test_fake_xmlrpc.py`` runs pwclient on it.

Left out: web pages (404; a download is served by ``GET`` and ``HEAD``
only), ``OPTIONS`` (a 405), ``Accept`` negotiation and the browsable
API, and SQLite's order of ties beyond the common cases (ties come out
by id, see :meth:`FakePatchwork._order`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import datetime as dt
import email.parser
import email.policy
import email.utils
import functools
import hashlib
import json
import operator
import re
import threading
import unicodedata
import xmlrpc.client
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.encoders import encode_7or8bit
from email.header import Header
from email.mime.nonmultipart import MIMENonMultipart
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlencode, urlsplit
from xmlrpc.server import SimpleXMLRPCDispatcher, XMLRPCDocGenerator

import orjson
from aiohttp import web

from sync.recorded import PLACEHOLDER, read_records

CRAWL = Path(__file__).parent / "fixtures" / "crawl.jsonl.xz"
VERSION = "1.4"
#: The crawl's identity: any token stands for it unless told otherwise.
CIBOT = 4

DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 250


class State(NamedTuple):
    """A patch state as Patchwork's ``State`` model has it."""

    id: int
    slug: str
    name: str
    ordering: int


DEFAULT_STATES = tuple(
    State(i + 1, slug, name, i)
    for i, (slug, name) in enumerate(
        [
            ("new", "New"),
            ("under-review", "Under Review"),
            ("accepted", "Accepted"),
            ("rejected", "Rejected"),
            ("rfc", "RFC"),
            ("not-applicable", "Not Applicable"),
            ("changes-requested", "Changes Requested"),
            ("awaiting-upstream", "Awaiting Upstream"),
            ("superseded", "Superseded"),
            ("deferred", "Deferred"),
        ]
    )
)

CHECK_STATES = {"pending": 0, "success": 1, "warning": 2, "fail": 3}

#: Resource name -> the model Patchwork names in its 404 ``detail``.
MODELS = {
    "projects": "Project",
    "people": "Person",
    "users": "User",
    "patches": "Patch",
    "covers": "Cover",
    "series": "Series",
    "bundles": "Bundle",
    "patch-comments": "PatchComment",
    "cover-comments": "CoverComment",
    "checks": "Check",
}
RESOURCES = (*MODELS, "events")


def _names(text: str) -> tuple[str, ...]:
    """A key order written as one string of names."""
    return tuple(text.split())


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

#: Fields a user's detail shows only to that user.
SELF_ONLY = ("settings",)
DEFAULT_SETTINGS = {"send_email": False, "items_per_page": 100, "show_ids": False}

#: Fields a list item lacks compared with the detail.
LIST_EXCLUDES = {
    "patches": ("headers", "content", "diff", "prefixes"),
    "covers": ("headers", "content"),
}

#: Fields derived at render time: not stored, whatever the recording says.
DERIVED = {
    "projects": ("url",),
    "people": ("url",),
    "users": ("url",),
    "patches": _names("url web_url list_archive_url mbox series comments check checks related"),
    "covers": _names("url web_url list_archive_url mbox series comments"),
    "series": _names("url web_url received_total received_all mbox patches dependents"),
    "bundles": _names("url web_url mbox"),
    "patch-comments": _names("url web_url list_archive_url"),
    "cover-comments": _names("url web_url list_archive_url"),
    "checks": ("url",),
}

#: Payload keys per event category, in the order Patchwork renders them.
EVENT_PAYLOADS = {
    "cover-created": ("cover",),
    "patch-created": ("patch",),
    "patch-completed": ("patch", "series"),
    "patch-state-changed": ("patch", "previous_state", "current_state"),
    "patch-delegated": ("patch", "previous_delegate", "current_delegate"),
    "patch-relation-changed": ("patch", "previous_relation", "current_relation"),
    "check-created": ("patch", "check"),
    "series-created": ("series",),
    "series-completed": ("series",),
    "cover-comment-created": ("cover", "comment"),
    "patch-comment-created": ("patch", "comment"),
}
EVENT_KEYS = ("id", "category", "project", "date", "actor", "payload")

INDEX_KEYS = ("projects", "users", "people", "patches", "covers", "series", "events", "bundles")

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

#: Django's plain 500 page (DEBUG off), as the recorded instance sends it.
SERVER_ERROR_PAGE = (
    '\n<!doctype html>\n<html lang="en">\n<head>\n  <title>Server Error (500)</title>\n'
    "</head>\n<body>\n  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n"
)
NOT_FOUND_PAGE = (
    "<html><body><h1>Not Found</h1><p>The requested resource <code>",
    "</code> was not found.</p></body></html>",
)

#: A bundle's mbox, and the patch ids in one (in the order of the mails).
_BUNDLE_MBOX = re.compile(r"^/bundle/(?P<owner>[^/]+)/(?P<name>[^/]+)/mbox/$")
_PATCHWORK_ID = re.compile(r"^X-Patchwork-Id: (\d+)$", re.M)

#: Characters Django's ``reverse()`` leaves unquoted in a path argument.
_URL_SAFE = "!$&'()*+,;=/~:@"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ilower(text: str) -> str:
    """SQLite's LIKE folds only ASCII letters: so do we."""
    return text.translate(_ASCII_LOWER)


def _field(name: str, obj: dict[str, Any]) -> Any:
    return obj.get(name)


def _iexact(expected: str, value: str | None) -> bool:
    """Django's ``iexact`` on SQLite (``LIKE``: ASCII case folding)."""
    return value is not None and _ilower(value) == _ilower(expected)


def _iso(value: dt.datetime) -> str:
    """Django REST framework's date format: Python's ``isoformat()``."""
    return value.isoformat()


def _parse_date(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


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


def _subject(name: str) -> str:
    """The mail subject a patch name comes from: '[1/2] x' <- '[PATCH 1/2] x'."""
    return f"[PATCH {name[1:]}" if name.startswith("[") else f"[PATCH] {name}"


class _ServerError(Exception):
    """Where Patchwork fails with a 500 (an invalid field in a query)."""


class _Invalid(Exception):
    """A filter value Patchwork rejects: the list comes out empty."""


class _Http(Exception):
    """An early JSON answer (403, 404) from a view."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


NOT_AUTHENTICATED = "Authentication credentials were not provided."
DENIED = "You do not have permission to perform this action."
RELATION_CONFLICT = (
    "At least one patch is already part of another relation. You have to explicitly"
    " remove a patch from its existing relation before moving it to this one."
)
NOT_MAINTAINER = "At least one patch is part of a project you are not maintaining."


@dataclass(frozen=True)
class Received:
    """One request as the fake received it (see :attr:`FakePatchwork.received`)."""

    method: str
    #: The raw path and query string.
    path: str
    #: Every header, as sent (a repeated header keeps its last value).
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """A header by name, whatever its case."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    @property
    def authorization(self) -> str | None:
        return self.header("Authorization")

    @property
    def content_type(self) -> str | None:
        return self.header("Content-Type")

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> list[tuple[str, str]]:
        """A URL-encoded body's fields, repeated keys and all."""
        return parse_qsl(self.body.decode(), keep_blank_values=True)


class _Missing:
    """DRF's ``empty``: no value at all (not even null)."""

    def __repr__(self) -> str:
        return "<empty>"


_MISSING: Any = _Missing()
#: A check's ``user`` defaults to the caller (DRF's ``CurrentUserDefault``).
_CURRENT_USER: Any = _Missing()


class _Skip(Exception):
    """DRF's ``SkipField``: a field left out of the validated data."""


class _FieldError(Exception):
    """A DRF ``ValidationError``: messages, or a dict of them per field (a 400)."""

    def __init__(self, detail: list[str] | dict[str, Any]) -> None:
        super().__init__(detail)
        self.detail = detail


class _Form:
    """Form data as Django's ``QueryDict`` holds it: keys repeat, the last one wins."""

    def __init__(self, pairs: Iterable[tuple[str, Any]]) -> None:
        self.pairs = list(pairs)

    def __contains__(self, key: object) -> bool:
        return any(k == key for k, _ in self.pairs)

    def __getitem__(self, key: str) -> Any:
        values = self.getlist(key)
        if not values:
            raise KeyError(key)
        return values[-1]

    def __setitem__(self, key: str, value: Any) -> None:
        self.pairs = [(k, v) for k, v in self.pairs if k != key] + [(key, value)]

    def getlist(self, key: str) -> list[Any]:
        return [v for k, v in self.pairs if k == key]

    def nested(self, prefix: str) -> Any:
        """DRF's ``parse_html_dict``: ``prefix.key`` fields, or nothing."""
        start = prefix + "."
        pairs = [(k[len(start) :], v) for k, v in self.pairs if k.startswith(start)]
        pairs = [(k, v) for k, v in pairs if k and "\n" not in k]
        return _Form(pairs) if pairs else _MISSING


@dataclass(frozen=True)
class _Field:
    """A writable field of a Patchwork serializer, as DRF validates it."""

    name: str
    #: char, bool, int, pk (a related object's id), pks (a list of them),
    #: state (a patch state's slug or name), choice (a check state), nested
    kind: str
    required: bool = False
    null: bool = False
    blank: bool = False
    max_length: int | None = None
    #: char: "url" or "slug" (one more validator); pk, pks: the resource
    check: str = ""
    default: Any = _MISSING
    min_value: int | None = None
    max_value: int | None = None
    fields: tuple[_Field, ...] = ()


_URL_FIELDS = (
    "web_url",
    "scm_url",
    "webscm_url",
    "list_archive_url",
    "list_archive_url_format",
    "commit_url_format",
)
#: Each writable resource's writable fields, in the serializers' order.
WRITABLE: dict[str, tuple[_Field, ...]] = {
    "patches": (
        _Field("commit_ref", "char", null=True, blank=True, max_length=255),
        _Field("pull_url", "char", null=True, blank=True, max_length=255),
        _Field("state", "state", required=True),
        _Field("archived", "bool"),
        _Field("delegate", "pk", required=True, null=True, check="users"),
        _Field("related", "pks", check="patches", default=list),
    ),
    "checks": (
        _Field("user", "pk", check="users", default=_CURRENT_USER),
        _Field("state", "choice"),
        _Field("target_url", "char", null=True, blank=True, max_length=200, check="url"),
        _Field("context", "char", max_length=255, check="slug"),
        _Field("description", "char", null=True, blank=True),
    ),
    "bundles": (
        _Field("name", "char", required=True, max_length=50),
        _Field("patches", "pks", required=True, check="patches"),
        _Field("public", "bool"),
    ),
    "users": (
        _Field("first_name", "char", blank=True, max_length=150),
        _Field("last_name", "char", blank=True, max_length=150),
        _Field(
            "settings",
            "nested",
            required=True,
            fields=(
                _Field("send_email", "bool"),
                # PositiveIntegerField on SQLite: Django's 64-bit range.
                _Field("items_per_page", "int", min_value=0, max_value=2**63 - 1),
                _Field("show_ids", "bool"),
            ),
        ),
    ),
    "projects": (
        *(_Field(name, "char", blank=True, max_length=2000) for name in _URL_FIELDS),
        _Field("show_dependencies", "bool"),
    ),
    "patch-comments": (_Field("addressed", "bool", null=True),),
    "cover-comments": (_Field("addressed", "bool", null=True),),
}

#: DRF's BooleanField values, strings compared lowercased (1 is True, 0 False).
_TRUE = frozenset({"t", "y", "yes", "true", "on", "1", 1})
_FALSE = frozenset({"f", "n", "no", "false", "off", "0", 0})
_NULL = frozenset({"null", "", None})
_SLUG = re.compile(r"^[-a-zA-Z0-9_]+\Z")
_UL = "\u00a1-\uffff"
_IPV4 = r"(?:0|25[0-5]|2[0-4][0-9]|1[0-9]?[0-9]?|[1-9][0-9]?)"
_HOST = (
    rf"[a-z{_UL}0-9](?:[a-z{_UL}0-9-]{{0,61}}[a-z{_UL}0-9])?"
    rf"(?:\.(?!-)[a-z{_UL}0-9-]{{1,63}}(?<!-))*"
    rf"\.(?!-)(?:[a-z{_UL}-]{{2,63}}|xn--[a-z0-9]{{1,59}})(?<!-)\.?"
)
#: Django's ``URLValidator``.
_URL = re.compile(
    r"^(?:[a-z0-9.+-]*)://(?:[^\s:@/]+(?::[^\s:@/]*)?@)?"
    rf"(?:{_IPV4}(?:\.{_IPV4}){{3}}|\[[0-9a-f:.]+\]|(?:{_HOST}|localhost))"
    r"(?::[0-9]{1,5})?(?:[/?#][^\s]*)?\Z",
    re.IGNORECASE,
)
_MAX_SQLITE_INT = 2**63 - 1


def _valid_url(value: str) -> bool:
    if len(value) > 2048 or set("\t\r\n") & set(value):
        return False
    if value.split("://")[0].lower() not in ("http", "https", "ftp", "ftps"):
        return False
    match = _URL.match(value)
    if match is None:
        return False
    host = urlsplit(value).hostname or ""
    return len(host) <= 253


def _slugify(value: str) -> str:
    """Django's ``slugify`` (ASCII)."""
    value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w\s-]", "", value.lower())
    return re.sub(r"[-\s]+", "-", value).strip("-_")


def _strict_constant(value: str) -> Any:
    raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")


_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
#: DRF's default parsers, in the order it tries them.
_PARSERS = ("application/json", *_FORMS)


def _media_type(content_type: str) -> tuple[str, str, dict[str, str]]:
    """(type, subtype, parameters) of a Content-Type, as DRF's ``_MediaType``."""
    full, _, rest = content_type.partition(";")
    main, _, sub = full.strip().lower().partition("/")
    params = {}
    for part in rest.split(";"):
        key, eq, value = part.partition("=")
        if eq:
            params[key.strip().lower()] = value.strip().strip('"')
    return main, sub, params


def _parse_body(content_type: str | None, body: bytes) -> Any:
    """DRF's ``request.data``: a JSON value or a :class:`_Form`."""
    content_type = content_type or ""
    main, sub, params = _media_type(content_type)
    if not body:
        return _Form([]) if f"{main}/{sub}" in _FORMS else {}
    parser = None
    for candidate in _PARSERS:
        want_main, _, want_sub = candidate.partition("/")
        if main in ("*", want_main) and sub in ("*", want_sub):
            parser = candidate
            break
    if parser is None:
        raise _Http(415, f'Unsupported media type "{content_type}" in request.')
    encoding = params.get("charset") or "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        encoding = "utf-8"
    if parser == "application/json":
        try:
            return json.loads(body.decode(encoding), parse_constant=_strict_constant)
        except ValueError as exc:
            raise _Http(400, f"JSON parse error - {exc}") from None
    if parser == "application/x-www-form-urlencoded":
        text = body.decode(encoding, "replace")
        return _Form(parse_qsl(text, keep_blank_values=True))
    boundary = params.get("boundary")
    if not boundary:
        raise _Http(400, "Multipart form parse error - Invalid boundary in multipart: None")
    head = f"Content-Type: {content_type}\r\n\r\n".encode("utf-8", "surrogateescape")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    pairs = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_filename() is not None:
            continue  # files are no field of any Patchwork serializer
        payload = part.get_payload(decode=True)
        charset = part.get_content_charset() or encoding
        value = payload.decode(charset, "replace") if isinstance(payload, bytes) else ""
        pairs.append((name, value))
    return _Form(pairs)


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


#: Versions Patchwork 3.x routes.
VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4")
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

#: Sub-resource -> (parent resource, the field naming the parent).
PARENTS = {
    "patch-comments": ("patches", "_patch"),
    "checks": ("patches", "_patch"),
    "cover-comments": ("covers", "_cover"),
}


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


def _download_parts(raw_path: str) -> tuple[str, ...] | None:
    """The download view a path names (Patchwork's ``urls.py``), and its
    arguments (path segments, each decoded); None: no download.

    ``("patch", project, msgid, "mbox"|"raw")``, ``("cover", project, msgid)``,
    ``("series", id)``, ``("bundle", owner, name)``, and the old-style
    ``("patch-id", id, "mbox"|"raw")`` and ``("cover-id", id)``.
    """
    if not raw_path.startswith("/") or not raw_path.endswith("/"):
        return None
    parts = [unquote(segment) for segment in raw_path[1:-1].split("/")]
    if not all(parts):
        return None
    number = len(parts) >= 2 and parts[1].isascii() and parts[1].isdigit()
    match parts:
        case ["project", project, "patch", msgid, "mbox" | "raw" as kind]:
            return ("patch", project, msgid, kind)
        case ["project", project, "cover", *msgid, "mbox"] if msgid:
            return ("cover", project, "/".join(msgid))
        case ["series", series, "mbox"] if number:
            return ("series", series)
        case ["bundle", owner, name, "mbox"]:
            return ("bundle", owner, name)
        case ["patch", patch, "mbox" | "raw" as kind] if number:
            return ("patch-id", patch, kind)
        case ["cover", cover, "mbox"] if number:
            return ("cover-id", cover)
    return None


def _has_version(version: str | None, since: str) -> bool:
    """Patchwork's ``utils.has_version``: no version is the latest."""
    return version is None or version.split(".") >= since.split(".")


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


def _dumps(data: Any) -> bytes:
    """DRF's JSONRenderer: compact, UTF-8, with U+2028/U+2029 escaped."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


def _probed_states(
    probes: Iterable[tuple[dict[str, list[str]], list[dict[str, Any]]]],
) -> tuple[State, ...]:
    """States from a crawl's answers to state probes (see ``sync.states``)."""
    slug_of: dict[int, str] = {}
    exists: set[int] = set()  # ids some probe's non-empty answer proves are states
    ranked: list[tuple[int, str]] = []  # (number of ids asked about, lowest slug)
    for query, body in probes:
        ids = query.get("state", [])
        if not body or not all(i.isdigit() for i in ids):
            continue
        if len(ids) == 1 and "order" not in query:
            slug_of[int(ids[0])] = body[0]["state"]
        elif query.get("order") == ["state"]:
            ranked.append((len(set(ids)), body[0]["state"]))
        else:
            exists.update(int(i) for i in ids)
    order = [slug for _, slug in sorted(ranked, key=lambda r: -r[0])]
    order = list(dict.fromkeys(order))
    order += [slug for _, slug in sorted(slug_of.items()) if slug not in order]
    # States without patches: a default id keeps its default slug and place.
    defaults = {s.id: s.slug for s in DEFAULT_STATES}
    for state_id in sorted(exists - set(slug_of)):
        slug = defaults.get(state_id, f"state-{state_id}")
        slug_of[state_id] = slug
        before = [d for i, d in sorted(defaults.items()) if i < state_id and d in order]
        order.insert(order.index(before[-1]) + 1 if before else len(order), slug)
    names = {s.slug: s.name for s in DEFAULT_STATES}
    return tuple(
        State(i, slug, names.get(slug, slug.replace("-", " ").title()), order.index(slug))
        for i, slug in sorted(slug_of.items())
    )


class FakePatchwork:
    """In-memory Patchwork: state, rendering, mutations and an HTTP app.

    Every public method takes the lock, so tests may change the fake while
    its application serves requests in another thread.
    """

    def __init__(self, states: Iterable[State] = DEFAULT_STATES) -> None:
        self._lock = threading.RLock()
        self.states = tuple(states)
        self._objects: dict[str, dict[int, dict[str, Any]]] = {r: {} for r in RESOURCES}
        self._next_id: dict[str, int] = dict.fromkeys(RESOURCES, 1)
        self._keys: dict[str, tuple[str, ...]] = {}
        self._list_keys: dict[str, tuple[str, ...]] = {}
        # Indexes of children, kept in ascending id order.
        self._series_patches: dict[int, list[int]] = {}
        self._children: dict[str, dict[int, list[int]]] = {r: {} for r in PARENTS}
        self._relations: dict[int, set[int]] = {}
        self._next_relation = 1
        self._clock = dt.datetime(2000, 1, 1)
        self._mail_clock = dt.datetime(2000, 1, 1)
        #: Token -> user id; ``None``: any token is the crawl's identity.
        self.tokens: dict[str, int] | None = None
        #: The user any token stands for when ``tokens`` is None: the
        #: crawl's identity (the owner of a private bundle it saw, else 4).
        self.identity = CIBOT
        #: The 404 page for unknown paths, split around the quoted path.
        self.not_found_page = NOT_FOUND_PAGE
        #: Requests served (all of them, whatever the answer).
        self.requests = 0
        #: Every request's method and path with query, in order.
        self.request_log: list[str] = []
        #: Every request as received, headers and body included, in order:
        #: the latest :attr:`max_received` of them.
        self.received: list[Received] = []
        self.max_received = 10_000
        #: Answer every request with a 503 (an outage).
        self.down = False
        #: Seconds to wait before answering each request.
        self.delay = 0.0
        #: Called (outside the lock) with each request's path and query.
        self.on_request: Callable[[str], None] | None = None
        #: Serve Patchwork's XML-RPC API at ``/xmlrpc/`` (its ``ENABLE_XMLRPC``).
        self.serve_xmlrpc = True
        self._fields = self._field_renderers()
        self._xmlrpc = _XmlRpc(self)

    # ------------------------------------------------------------------
    # Loading

    @classmethod
    def from_crawl(
        cls, path: str | Path = CRAWL, *, states: Iterable[State] | None = None
    ) -> FakePatchwork:
        """The instance a recorded crawl shows, as its crawl identity saw it.

        Without ``states``: Patchwork's defaults, unless the patches show
        other slugs; then the states the crawl's state probes reveal
        (``?state=<id>``, ``?order=state&state=...``, as ``sync.states``
        asks them).
        """
        return cls.from_records(read_records(path), states=states)

    @classmethod
    def from_records(
        cls, records: Iterable[dict[str, Any]], *, states: Iterable[State] | None = None
    ) -> FakePatchwork:
        """Like :meth:`from_crawl`, from records already read (tests that
        build many fakes read the crawl once; the records stay unchanged)."""
        fake = cls(DEFAULT_STATES if states is None else states)
        fake._load(records, infer_states=states is None)
        return fake

    def _load(self, records: Iterable[dict[str, Any]], infer_states: bool = False) -> None:
        details: dict[str, dict[int, dict[str, Any]]] = {r: {} for r in RESOURCES}
        parents: dict[str, dict[int, int]] = {r: {} for r in PARENTS}
        probes: list[tuple[dict[str, list[str]], list[dict[str, Any]]]] = []
        orders: dict[tuple[str, str], list[int]] = {}
        for rec in records:
            path = rec["path"]
            if rec.get("method", "GET") != "GET" or rec["status"] != 200:
                continue
            mbox = _BUNDLE_MBOX.match(path)
            if mbox is not None and isinstance(rec["body"], str):
                # The order patches were added in, which only the mbox shows.
                key = (unquote(mbox["owner"]), unquote(mbox["name"]))
                orders[key] = [int(i) for i in _PATCHWORK_ID.findall(rec["body"])]
                continue
            if not path.startswith(f"/api/{VERSION}/") and path != "/api/":
                continue
            route = _route(urlsplit(path).path)
            if route is None:
                continue
            body = rec["body"]
            if route.resource == "patches" and route.kind == "list" and "state=" in path:
                probes.append((parse_qs(urlsplit(path).query), body))
            if route.kind == "index":
                continue
            res = route.resource
            items = body if route.kind == "list" else [body]
            if route.kind == "list" and body:
                self._list_keys.setdefault(res, tuple(body[0]))
            if route.kind == "detail":
                self._keys.setdefault(res, tuple(k for k in body if k not in SELF_ONLY))
            for item in items:
                # A detail wins over a list item (which lacks fields).
                if route.kind == "detail" or item["id"] not in details[res]:
                    details[res][item["id"]] = item
                if route.parent is not None:
                    parents[res][item["id"]] = route.parent
        for res in RESOURCES:
            if res not in self._keys and res in self._list_keys:
                self._keys[res] = self._list_keys[res]
            if res not in self._keys and res in DEFAULT_KEYS:
                self._keys[res] = DEFAULT_KEYS[res]
        for res, keys in list(self._keys.items()):
            if res == "series":
                # Hidden where no project shows dependencies; they come last.
                extra = tuple(k for k in ("dependencies", "dependents") if k not in keys)
                self._keys[res] = keys = keys + extra
                if res in self._list_keys:
                    self._list_keys[res] += extra
            if res not in self._list_keys:
                excluded = LIST_EXCLUDES.get(res, ())
                self._list_keys[res] = tuple(k for k in keys if k not in excluded)
        private = [b for b in details["bundles"].values() if not b["public"]]
        if private:
            self.identity = private[0]["owner"]["id"]
        slugs = {item["state"] for item in details["patches"].values()}
        if infer_states and not slugs <= {s.slug for s in self.states}:
            self.states = _probed_states(probes)
        for res in ("users", "people", "projects", "covers", "patches", "series", "bundles"):
            for _, item in sorted(details[res].items()):
                self._store(res, self._from_recorded(res, item))
        for bundle in self._objects["bundles"].values():
            order = orders.get(
                (self._objects["users"][bundle["owner"]]["username"], bundle["name"])
            )
            if order is not None and sorted(order) == sorted(bundle["patches"]):
                bundle["patches"] = order
        for res in PARENTS:
            for obj_id, item in sorted(details[res].items()):
                obj = self._from_recorded(res, item)
                obj[PARENTS[res][1]] = parents[res].get(obj_id) or self._parent_from_url(item)
                self._store(res, obj)
        for _, item in sorted(details["events"].items()):
            self._store("events", self._event_from_recorded(item))
        self._link_relations(details["patches"])
        dates = [e["_date"] for e in self._objects["events"].values()]
        dates += [c["_date"] for c in self._objects["checks"].values()]
        self._clock = max(dates, default=self._clock)
        mails = [o["_date"] for r in ("patches", "covers") for o in self._objects[r].values()]
        mails += [o["_date"] for r in PARENTS if r != "checks" for o in self._objects[r].values()]
        self._mail_clock = max(mails, default=self._mail_clock)

    def add_recorded(self, resource: str, item: dict[str, Any]) -> None:
        """Add an object as a recorded answer shows it (any version), with its id.

        For what the crawl's identity could not see, say other users'
        private bundles, which other identities' answers show: bundles,
        users, people and projects.
        """
        if resource not in ("bundles", "users", "people", "projects"):
            raise ValueError(f"cannot add recorded {resource}")
        with self._lock:
            if item["id"] in self._objects[resource]:
                raise ValueError(f"{resource} {item['id']} exists")
            self._store(resource, self._from_recorded(resource, item))

    @staticmethod
    def _parent_from_url(item: dict[str, Any]) -> int:
        return int(item["url"].rstrip("/").split("/")[-3])

    @staticmethod
    def _ref(value: dict[str, Any] | None) -> int | None:
        return None if value is None else int(value["id"])

    def _from_recorded(self, res: str, item: dict[str, Any]) -> dict[str, Any]:
        """A recorded object with references for embedded objects."""
        obj = {k: v for k, v in item.items() if k not in DERIVED.get(res, ())}
        ref = self._ref
        if res == "projects":
            obj["maintainers"] = [u["id"] for u in item["maintainers"]]
        elif res == "people":
            obj["user"] = ref(item["user"])
        elif res in ("patches", "covers", "series", "bundles"):
            obj["project"] = ref(item["project"])
        if res in ("patches", "covers", "series", "patch-comments", "cover-comments"):
            obj["submitter"] = ref(item["submitter"])
        if res == "patches":
            obj["delegate"] = ref(item["delegate"])
            obj["_series"] = item["series"][0]["id"] if item["series"] else None
            obj["_number"] = None
            obj["_relation"] = None
        elif res == "covers":
            obj["_series"] = None
        elif res == "series":
            obj["cover_letter"] = ref(item["cover_letter"])
            obj["_patch_order"] = [p["id"] for p in item["patches"]]
            if "dependencies" in item:
                obj["dependencies"] = [
                    int(u.rstrip("/").split("/")[-1]) for u in item["dependencies"]
                ]
        elif res == "bundles":
            obj["owner"] = ref(item["owner"])
            obj["patches"] = [p["id"] for p in item["patches"]]
        elif res == "checks":
            obj["user"] = ref(item["user"])
        if "date" in obj:
            obj["_date"] = _parse_date(obj["date"])
        return obj

    def _event_from_recorded(self, item: dict[str, Any]) -> dict[str, Any]:
        payload = item["payload"]
        event: dict[str, Any] = {
            "id": item["id"],
            "category": item["category"],
            "project": item["project"]["id"],
            "date": item["date"],
            "_date": _parse_date(item["date"]),
            "actor": self._ref(item["actor"]),
        }
        for key in EVENT_PAYLOADS[item["category"]]:
            value = payload.get(key)
            if key.endswith("_state") or key.endswith("_relation"):
                event[key] = value
            else:
                event[key] = self._ref(value)
        return event

    def _link_relations(self, patches: dict[int, dict[str, Any]]) -> None:
        for pid, item in sorted(patches.items()):
            if not item.get("related") or self._objects["patches"][pid]["_relation"]:
                continue
            members = {pid, *(p["id"] for p in item["related"])}
            rid = self._new_relation(members)
            for member in members:
                self._objects["patches"][member]["_relation"] = rid

    def _new_relation(self, members: set[int]) -> int:
        rid = self._next_relation
        self._next_relation += 1
        self._relations[rid] = set(members)
        return rid

    def _store(self, res: str, obj: dict[str, Any]) -> None:
        """Add an object and keep the child indexes."""
        obj_id = obj["id"]
        self._objects[res][obj_id] = obj
        self._next_id[res] = max(self._next_id[res], obj_id + 1)
        if res == "patches" and obj["_series"] is not None:
            members = self._series_patches.setdefault(obj["_series"], [])
            members.append(obj_id)
            members.sort()
        elif res == "series":
            order = obj.pop("_patch_order", None)
            for number, pid in enumerate(order or (), 1):
                self._objects["patches"][pid]["_number"] = number
            if obj["cover_letter"] is not None:
                self._objects["covers"][obj["cover_letter"]]["_series"] = obj_id
        elif res in PARENTS:
            parent = obj[PARENTS[res][1]]
            self._children[res].setdefault(parent, []).append(obj_id)
            self._children[res][parent].sort()

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
    # Queries: filters, search, ordering

    def state(self, value: str | int) -> State:
        """A state by id, slug or name (as Patchwork's state filter reads)."""
        for state in self.states:
            if value in (state.id, state.slug) or (
                isinstance(value, str) and _ilower(value) == _ilower(state.name)
            ):
                return state
        raise KeyError(value)

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

    # ------------------------------------------------------------------
    # HTTP

    def app(self, origin: str | None = None) -> web.Application:
        """The upstream as an aiohttp application.

        URLs in answers use ``origin`` if given, else the request's own
        scheme and Host (as Django's ``build_absolute_uri`` does).
        """

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            path = request.rel_url.raw_path_qs
            with self._lock:
                self.requests += 1
                self.request_log.append(f"{request.method} {path}")
                self.received.append(Received(request.method, path, dict(request.headers), body))
                if len(self.received) > self.max_received:
                    del self.received[: len(self.received) - self.max_received]
            if self.on_request is not None:
                self.on_request(path)
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.down:
                return web.Response(
                    status=503, text="Service Unavailable", content_type="text/html"
                )
            base = origin or f"{request.scheme}://{request.host}"
            with self._lock:
                return self._answer(request, base, body)

        application = web.Application()
        application.router.add_route("*", "/{tail:.*}", handle)
        return application

    def path_counts(self) -> Counter[str]:
        """How often each path (without query) was requested."""
        with self._lock:
            return Counter(line.split(" ", 1)[1].split("?")[0] for line in self.request_log)

    def reset_requests(self) -> None:
        """Start counting requests afresh (say, before a sync under test);
        :attr:`received` empties too."""
        with self._lock:
            self.requests = 0
            self.request_log.clear()
            self.received.clear()

    def writes_received(self) -> list[Received]:
        """The requests received other than reads (GET, HEAD), in order."""
        with self._lock:
            return [r for r in self.received if r.method not in ("GET", "HEAD")]

    def _not_found_page(self, path: str) -> web.Response:
        before, after = self.not_found_page
        page = before + quote(path) + after
        return web.Response(status=404, text=page, content_type="text/html", charset="utf-8")

    def _identity(self, header: str | None) -> int | None:
        """The user an ``Authorization`` header stands for; None: anonymous.

        As DRF's Basic then Token authentication read it: other schemes
        are anonymous, malformed credentials a 403.  With ``tokens`` set,
        a token must be one of them and Basic credentials must be a
        username and ``pw-<username>``; without, any credentials stand for
        :attr:`identity`.
        """
        if not header:
            return None
        parts = header.encode("utf-8", "surrogateescape").split()
        if not parts:
            return None
        scheme = parts[0].lower()
        if scheme == b"basic":
            if len(parts) == 1:
                raise _Http(403, "Invalid basic header. No credentials provided.")
            if len(parts) > 2:
                raise _Http(
                    403, "Invalid basic header. Credentials string should not contain spaces."
                )
            try:
                raw = base64.b64decode(parts[1])
                try:
                    decoded = raw.decode("utf-8")
                except UnicodeDecodeError:
                    decoded = raw.decode("latin-1")
                username, password = decoded.split(":", 1)
            except (ValueError, binascii.Error):
                raise _Http(
                    403, "Invalid basic header. Credentials not correctly base64 encoded."
                ) from None
            if self.tokens is None:
                return self.identity
            for user in self._objects["users"].values():
                if user["username"] == username and password == f"pw-{username}":
                    return int(user["id"])
            raise _Http(403, "Invalid username/password.")
        if scheme != b"token":
            return None  # DRF ignores schemes it does not know
        if len(parts) == 1:
            raise _Http(403, "Invalid token header. No credentials provided.")
        if len(parts) > 2:
            raise _Http(403, "Invalid token header. Token string should not contain spaces.")
        try:
            token = parts[1].decode()
        except UnicodeDecodeError:
            raise _Http(
                403, "Invalid token header. Token string should not contain invalid characters."
            ) from None
        if self.tokens is None:
            return self.identity
        if token in self.tokens:
            return self.tokens[token]
        raise _Http(403, "Invalid token.")

    @staticmethod
    def _route_of(path: str, method: str) -> _Route | None:
        """The route of a path (at any version whose URL patterns have it)."""
        return _route(path)

    def _answer(self, request: web.Request, origin: str, raw_body: bytes) -> web.StreamResponse:
        path = request.path
        method = request.method
        if self.serve_xmlrpc and path in (XMLRPC_PATH, XMLRPC_PATH.rstrip("/")):
            return self._xmlrpc_view(request, raw_body)
        raw_path = request.rel_url.raw_path
        reading = method in ("GET", "HEAD")
        download = _download_parts(raw_path) if reading else None
        if download is not None:
            return self._download(request, download)
        route = self._route_of(path, method)
        if route is None:
            slashed = self._route_of(path + "/", method) is not None or (
                reading and _download_parts(raw_path + "/") is not None
            )
            if not path.endswith("/") and slashed:
                # Django's APPEND_SLASH.
                raw = request.rel_url.raw_query_string
                location = request.rel_url.raw_path + "/" + (f"?{raw}" if raw else "")
                return web.Response(
                    status=301,
                    headers={"Location": location},
                    content_type="text/html",
                    charset="utf-8",
                )
            return self._not_found_page(path)
        headers = {"Allow": self._allow(route), "Vary": "Accept"}

        def answer(status: int, body: Any, extra: dict[str, str] | None = None) -> web.Response:
            return web.Response(
                status=status,
                body=_dumps(body),
                headers={**headers, **(extra or {})},
                content_type="application/json",
            )

        query: dict[str, list[str]] = {}
        raw_query = request.rel_url.raw_query_string
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            query.setdefault(key, []).append(value)
        fmt = query.get("format", [None])[-1]
        ctx = _Ctx.of(origin, route.versioned, fmt, route.version or VERSION)
        try:
            # DRF negotiates the format before it authenticates.
            if fmt not in (None, "", "json"):
                raise _Http(404, "Not found.")
            if method not in ("GET", "HEAD"):
                auth = request.headers.get("Authorization")
                content_type = request.headers.get("Content-Type")
                status, body, extra = self._write(method, route, auth, content_type, raw_body, ctx)
                if body is None:  # DRF drops the Content-Type of an empty answer
                    return web.Response(status=status, headers=headers)
                return answer(status, body, extra)
            user = self._identity(request.headers.get("Authorization"))
            if route.kind == "index":
                return answer(200, {k: f"{ctx.api}/{k}/{ctx.suffix}" for k in INDEX_KEYS})
            if route.resource in ("people", "users") and user is None:
                raise _Http(403, NOT_AUTHENTICATED)
            if route.kind == "detail":
                obj = self._lookup(route, user)
                return answer(200, self._render_obj(route.resource, obj, ctx, True, user))
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
            link = _link_header(f"{origin}{request.rel_url.raw_path}", raw_query, number, num_pages)
            return answer(200, body, {"Link": link})
        except _Http as exc:
            return answer(exc.status, {"detail": exc.detail})
        except _FieldError as exc:
            return answer(400, exc.detail)
        except _ServerError:
            return web.Response(
                status=500, text=SERVER_ERROR_PAGE, content_type="text/html", charset="utf-8"
            )

    # ------------------------------------------------------------------
    # Downloads: Patchwork's mbox and raw views (``patchwork/views/``)

    def _download(self, request: web.Request, parts: tuple[str, ...]) -> web.Response:
        """A patch's mbox (``?series=`` adds the patches before it) or diff, a
        cover's, a series' or a bundle's mbox, or an old-style redirect."""
        o = self._objects
        kind = parts[0]

        def found(content_type: str, filename: str, text: str) -> web.Response:
            headers = {"Content-Type": content_type, "Content-Disposition": filename}
            return web.Response(body=text.encode(), headers=headers)

        def submission(res: str, linkname: str, msgid: str) -> dict[str, Any] | None:
            project = next((p for p in o["projects"].values() if p["link_name"] == linkname), None)
            if project is None:
                return None
            wanted = f"<{msgid}>"
            return next(
                (
                    x
                    for x in o[res].values()
                    if x["project"] == project["id"] and x["msgid"] == wanted
                ),
                None,
            )

        missing = self._not_found_page(request.path)
        if kind in ("patch-id", "cover-id"):
            res = "patches" if kind == "patch-id" else "covers"
            obj = o[res].get(int(parts[1]))
            if obj is None:
                return missing
            linkname = o["projects"][obj["project"]]["link_name"]
            msgid = obj["msgid"].strip("<>").replace("/", "%2F")
            view = parts[2] if kind == "patch-id" else "mbox"
            path = (
                f"/project/{linkname}/{'patch' if kind == 'patch-id' else 'cover'}/{msgid}/{view}/"
            )
            headers = {"Location": quote(path, _URL_SAFE)}
            return web.Response(
                status=302, headers=headers, content_type="text/html", charset="utf-8"
            )
        if kind == "patch":
            patch = submission("patches", parts[1], parts[2])
            if patch is None:
                return missing
            name = _FILENAME.sub("-", patch["name"]).strip("-")
            if parts[3] == "raw":
                # HttpResponse.write(None) writes "None".
                return found(
                    "text/x-patch", f"attachment; filename={name}.diff", str(patch["diff"])
                )
            series = request.rel_url.query.getall("series", [""])[-1]
            if not series:
                text = self._submission_mbox("patches", patch)
            else:
                try:
                    text = self._series_patch_mbox(patch, series)
                except LookupError:
                    return missing
                except _ServerError:
                    return web.Response(
                        status=500,
                        text=SERVER_ERROR_PAGE,
                        content_type="text/html",
                        charset="utf-8",
                    )
            filename = f"attachment; filename={name}.patch"
            return found("text/plain; charset=utf-8", filename, text)
        if kind == "cover":
            cover = submission("covers", parts[1], parts[2])
            if cover is None:
                return missing
            name = _FILENAME.sub("-", cover["name"]).strip("-")
            text = self._submission_mbox("covers", cover)
            return found("text/plain", f"attachment; filename={name}.mbox", text)
        if kind == "series":
            series_obj = o["series"].get(int(parts[1]))
            if series_obj is None:
                return missing
            title = series_obj["name"] or f"Untitled series #{series_obj['id']}"
            name = _FILENAME.sub("-", title).strip("-")
            ids = sorted(
                self._series_patches.get(series_obj["id"], []),
                key=lambda i: (o["patches"][i]["_number"] or 0, i),
            )
            text = "\n".join(self._submission_mbox("patches", o["patches"][i]) for i in ids)
            return found("text/plain", f"attachment; filename={name}.patch", text)
        # A bundle: its owner and the public see it; bad credentials are anonymous.
        owner, bundle_name = parts[1], parts[2]
        bundle = next(
            (
                b
                for b in o["bundles"].values()
                if b["name"] == bundle_name and o["users"][b["owner"]]["username"] == owner
            ),
            None,
        )
        if bundle is None:
            return missing
        try:
            user = self._identity(request.headers.get("Authorization"))
        except _Http:
            user = None
        if not self._visible_bundle(bundle, user):
            # HttpResponseNotFound(): no page at all.
            return web.Response(status=404, content_type="text/html", charset="utf-8")
        text = "\n".join(
            self._submission_mbox("patches", o["patches"][i]) for i in bundle["patches"]
        )
        filename = f"attachment; filename=bundle-{bundle['id']}-{bundle['name']}.mbox"
        return found("text/plain", filename, text)

    def _series_patch_mbox(self, patch: dict[str, Any], series: str) -> str:
        """``series_patch_to_mbox``: the patches of its series before it, then
        it (LookupError: a 404; _ServerError: a 500)."""
        if series == "*":
            if patch["_series"] is None:
                raise LookupError(series)
        else:
            try:
                number = int(series)
            except ValueError:
                raise LookupError(series) from None
            if patch["_series"] is None:
                raise _ServerError  # ``patch.series.id`` of None
            if patch["_series"] != number:
                raise LookupError(series)
        patches = self._objects["patches"]
        before = [
            i
            for i in self._series_patches.get(patch["_series"], [])
            if (patches[i]["_number"] or 0) < (patch["_number"] or 0)
        ]
        before.sort(key=lambda i: (patches[i]["_number"], i))
        return "\n".join(
            self._submission_mbox("patches", m) for m in [*(patches[i] for i in before), patch]
        )

    def _submission_mbox(self, res: str, obj: dict[str, Any]) -> str:
        """``views.utils._submission_to_mbox`` of a patch or a cover; the
        headers as the stored (REST) dict holds them."""
        o = self._objects
        is_patch = res == "patches"
        body = ""
        if obj.get("content"):
            body = obj["content"].strip() + "\n"
        parts = _POSTSCRIPT.split(body, 1)
        if len(parts) == 2:
            body, postscript = parts
            body = body.strip() + "\n"
            postscript = postscript.rstrip()
        else:
            postscript = ""
        kind = "patch-comments" if is_patch else "cover-comments"
        comments = [o[kind][i] for i in self._children[kind].get(obj["id"], [])]
        for comment in sorted(comments, key=lambda c: (c["_date"], c["id"])):
            content = comment.get("content") or ""
            body += "".join(match.group(0) + "\n" for match in _RESPONSE.finditer(content))
        if postscript:
            body += "---" + postscript + "\n"
        if is_patch and obj.get("diff"):
            body += "\n" + obj["diff"]
        date = obj["_date"]
        utc_timestamp = int(date.replace(tzinfo=dt.UTC).timestamp())
        mail = _PatchMbox(body)
        submitter = o["people"][obj["submitter"]]
        mail["X-Patchwork-Submitter"] = email.utils.formataddr(
            (str(Header(submitter["name"], mail.patch_charset)), submitter["email"])
        )
        mail["X-Patchwork-Id"] = str(obj["id"])
        if is_patch and obj["delegate"] is not None:
            mail["X-Patchwork-Delegate"] = str(o["users"][obj["delegate"]]["email"])
        mail.set_unixfrom("From patchwork " + date.ctime())
        list_email = o["projects"][obj["project"]]["list_email"]
        for key, values in (obj.get("headers") or {}).items():
            if key in ("Content-Type", "Content-Transfer-Encoding"):
                continue
            for val in values if isinstance(values, list) else [values]:
                if key == "From" and _from_address(val) == list_email:
                    mail["X-Patchwork-Original-From"] = val
                    val = mail["X-Patchwork-Submitter"]
                mail[key] = val
        if "Date" not in mail:
            mail["Date"] = email.utils.formatdate(utc_timestamp)
        return mail.as_bytes(True).decode()

    def _xmlrpc_view(self, request: web.Request, raw_body: bytes) -> web.Response:
        """Patchwork's ``views.xmlrpc.xmlrpc``: POST calls, GET documents, the rest
        go to the project list."""

        def html(status: int = 200, text: str = "", location: str | None = None) -> web.Response:
            headers = {} if location is None else {"Location": location}
            return web.Response(
                status=status, text=text, headers=headers, content_type="text/html", charset="utf-8"
            )

        if request.path != XMLRPC_PATH:  # Django's APPEND_SLASH
            raw = request.rel_url.raw_query_string
            return html(301, location=XMLRPC_PATH + (f"?{raw}" if raw else ""))
        if request.method not in ("POST", "GET"):
            return html(302, location="/")
        if request.method == "GET":
            return html(text=self._xmlrpc.documentation())
        try:
            return html(text=self._xmlrpc.dispatch(request.headers.get("Authorization"), raw_body))
        except Exception:
            return html(500)

    @staticmethod
    def _allow(route: _Route) -> str:
        if route.kind == "index":
            return _READ
        if route.kind == "list":
            return ALLOW_LIST.get(route.resource, _READ)
        return ALLOW_DETAIL.get(route.resource, _READ)

    # ------------------------------------------------------------------
    # HTTP writes, as Patchwork's views answer them

    def _write(
        self,
        method: str,
        route: _Route,
        auth: str | None,
        content_type: str | None,
        raw_body: bytes,
        ctx: _Ctx,
    ) -> tuple[int, Any, dict[str, str]]:
        """A write: (status, JSON body or None, more headers).

        DRF's order: authentication, the view's permission, the method
        (405), the object (404) and its permission, then the body (415,
        parse errors), its validation (400), and the change itself.
        """
        user = self._identity(auth)
        res = route.resource
        if res in ("people", "users") and user is None:
            raise _Http(403, NOT_AUTHENTICATED)  # IsAuthenticated
        if res == "bundles":
            # BundlePermission: writes came with API 1.2.
            if not _has_version(route.version, "1.2"):
                raise _Http(405, f'Method "{method}" not allowed.')
            if method == "POST" and user is None:
                raise _Http(403, NOT_AUTHENTICATED)
        writable = {m.strip() for m in self._allow(route).split(",")} - {"GET", "HEAD", "OPTIONS"}
        if method not in writable:
            raise _Http(405, f'Method "{method}" not allowed.')

        def data() -> Any:
            return _parse_body(content_type, raw_body)

        partial = method == "PATCH"
        if route.kind == "list":
            if res == "checks":
                return self._create_check(route, user, data, ctx)
            return self._create_bundle(user, data, ctx)
        obj = self._lookup(route, user)
        if user is None or not self._editable(res, obj, user):
            raise _Http(403, NOT_AUTHENTICATED if user is None else DENIED)
        if res == "bundles" and method == "DELETE":
            self.delete_bundle(obj["id"])
            return 204, None, {}
        hooks: dict[str, Callable[[Any], Any]]
        if res == "patches":
            hooks = {"delegate": functools.partial(self._validate_delegate, obj)}
            validated = self._validate(res, data(), partial, user, hooks)
            self._update_patch(obj, validated, user)
        elif res in ("patch-comments", "cover-comments"):
            payload = data()
            if not partial:
                # The serializer's hidden parent field reads ``request.patch``
                # (or ``.cover``), which only the check view sets: a 500.
                self._validate_root(payload)
                raise _ServerError
            validated = self._validate(res, payload, partial, user)
            self.set_comment_addressed(res, obj["id"], validated.get("addressed", obj["addressed"]))
        elif res == "bundles":
            hooks = {"patches": self._validate_bundle_patches}
            validated = self._validate(res, data(), partial, user, hooks)
            self._update_bundle(obj, validated)
        elif res == "users":
            validated = self._validate(res, data(), partial, user)
            settings = validated.pop("settings", None)
            if settings and _has_version(route.version, "1.2") and user == obj["id"]:
                validated["settings"] = {**(obj.get("settings") or DEFAULT_SETTINGS), **settings}
            self.update(res, obj["id"], **validated)
        else:  # projects
            self.update(res, obj["id"], **self._validate(res, data(), partial, user))
        body = self._render_obj(res, obj, ctx, True, user)
        if res == "patches" and partial and obj["_relation"] is None:
            # ``related`` has a default, which DRF skips in a partial
            # update, where the patch has no relation to read it from.
            body.pop("related", None)
        return 200, body, {}

    def _maintains(self, user: int | None, project_id: int) -> bool:
        return user is not None and user in self._objects["projects"][project_id]["maintainers"]

    def _person_user(self, person_id: int | None) -> int | None:
        person = self._objects["people"].get(person_id) if person_id is not None else None
        return None if person is None else person["user"]

    def _patch_editable(self, patch: dict[str, Any], user: int | None) -> bool:
        """``Patch.is_editable``: its submitter, its delegate, its maintainers."""
        if user is None:
            return False
        if user in (self._person_user(patch["submitter"]), patch["delegate"]):
            return True
        return self._maintains(user, patch["project"])

    def _editable(self, res: str, obj: dict[str, Any], user: int) -> bool:
        """The object permission of each writable view (to a user)."""
        if res == "projects":
            return self._maintains(user, obj["id"])
        if res == "users":
            return bool(obj["id"] == user)
        if res == "bundles":
            return bool(obj["owner"] == user)
        if res == "patches":
            return self._patch_editable(obj, user)
        if user == self._person_user(obj["submitter"]):
            return True
        if res == "patch-comments":
            return self._patch_editable(self._objects["patches"][obj["_patch"]], user)
        cover = self._objects["covers"][obj["_cover"]]
        return user == self._person_user(cover["submitter"]) or self._maintains(
            user, cover["project"]
        )

    # Validation: DRF's serializers, field by field

    @staticmethod
    def _validate_root(data: Any) -> None:
        """What a serializer makes of data that is no object."""
        if data is None:
            raise _FieldError({"detail": ["No data provided"]})
        if not isinstance(data, (dict, _Form)):
            kind = type(data).__name__
            raise _FieldError({"detail": [f"Invalid data. Expected a dictionary, but got {kind}."]})

    def _validate(
        self,
        res: str,
        data: Any,
        partial: bool,
        user: int | None,
        hooks: Mapping[str, Callable[[Any], Any]] | None = None,
    ) -> dict[str, Any]:
        """The validated data of a write to ``res``, or a 400 (``_FieldError``)."""
        self._validate_root(data)
        return self._validate_fields(WRITABLE[res], data, partial, user, hooks or {})

    def _validate_fields(
        self,
        fields: Iterable[_Field],
        data: Any,
        partial: bool,
        user: int | None,
        hooks: Mapping[str, Callable[[Any], Any]],
    ) -> dict[str, Any]:
        validated: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for field in fields:
            try:
                value = self._field_value(field, data, partial)
                value = self._run_field(field, value, partial, user)
                if field.name in hooks:
                    value = hooks[field.name](value)
            except _FieldError as exc:
                errors[field.name] = exc.detail
            except _Skip:
                continue
            else:
                validated[field.name] = value
        if errors:
            raise _FieldError(errors)
        return validated

    @staticmethod
    def _field_value(field: _Field, data: Any, partial: bool) -> Any:
        """DRF's ``get_value``: forms cannot say null or false."""
        if not isinstance(data, _Form):
            return data.get(field.name, _MISSING)
        if field.kind == "nested":
            return data.nested(field.name)
        if field.kind == "pks":
            if field.name not in data and partial:
                return _MISSING
            return data.getlist(field.name)
        if field.name not in data:
            if partial:
                return _MISSING
            if field.kind == "bool":
                return None if field.null else False
            return _MISSING
        value = data[field.name]
        if value == "" and field.null:
            return "" if field.blank else None
        if value == "" and not field.required:
            return "" if field.blank else _MISSING
        return value

    def _run_field(self, field: _Field, value: Any, partial: bool, user: int | None) -> Any:
        if field.kind in ("pk", "state") and isinstance(value, str) and value == "":
            value = None  # RelatedField: an empty string is null
        if (
            field.kind == "char"
            and value is not _MISSING
            and (value == "" or str(value).strip() == "")
        ):
            if not field.blank:
                raise _FieldError(["This field may not be blank."])
            return ""
        if value is _MISSING:
            if partial:
                raise _Skip
            if field.required:
                raise _FieldError(["This field is required."])
            if field.default is _MISSING:
                raise _Skip
            if field.default is _CURRENT_USER:
                return user
            return field.default() if callable(field.default) else field.default
        if value is None:
            if not field.null:
                raise _FieldError(["This field may not be null."])
            return None
        value = self._to_internal(field, value, partial, user)
        errors = []
        if field.kind == "char":
            if field.max_length is not None and len(value) > field.max_length:
                errors.append(f"Ensure this field has no more than {field.max_length} characters.")
            if "\x00" in value:
                errors.append("Null characters are not allowed.")
            surrogate = next((c for c in value if 0xD800 <= ord(c) <= 0xDFFF), None)
            if surrogate is not None:
                errors.append(f"Surrogate characters are not allowed: U+{ord(surrogate):X}.")
            if field.check == "url" and not _valid_url(value):
                errors.append("Enter a valid URL.")
            if field.check == "slug" and not _SLUG.match(value):
                errors.append(
                    'Enter a valid "slug" consisting of letters, numbers, underscores or hyphens.'
                )
        elif field.kind == "int":
            if field.max_value is not None and value > field.max_value:
                errors.append(f"Ensure this value is less than or equal to {field.max_value}.")
            if field.min_value is not None and value < field.min_value:
                errors.append(f"Ensure this value is greater than or equal to {field.min_value}.")
        if errors:
            raise _FieldError(errors)
        return value

    def _to_internal(self, field: _Field, value: Any, partial: bool, user: int | None) -> Any:
        kind = field.kind
        if kind == "char":
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise _FieldError(["Not a valid string."])
            return str(value).strip()
        if kind == "bool":
            probe = value.lower() if isinstance(value, str) else value
            try:
                if probe in _TRUE:
                    return True
                if probe in _FALSE:
                    return False
                if probe in _NULL and field.null:
                    return None
            except TypeError:
                pass
            raise _FieldError(["Must be a valid boolean."])
        if kind == "int":
            if isinstance(value, str) and len(value) > 1000:
                raise _FieldError(["String value too large."])
            try:
                return int(re.sub(r"\.0*\s*$", "", str(value)))
            except ValueError:
                raise _FieldError(["A valid integer is required."]) from None
        if kind == "pk":
            return self._pk(field.check, value)
        if kind == "pks":
            if isinstance(value, str) or not hasattr(value, "__iter__"):
                kind_name = type(value).__name__
                raise _FieldError([f'Expected a list of items but got type "{kind_name}".'])
            return [self._pk(field.check, item) for item in value]
        if kind == "state":
            if not isinstance(value, str):
                raise _ServerError  # StateField calls data.lower()
            slug = _slugify(value.lower())
            ordered = sorted(self.states, key=lambda s: (s.ordering, s.id))
            for state in ordered:
                if state.slug == slug:
                    return state.slug
            choices = ", ".join(s.slug for s in ordered)
            raise _FieldError([f"Invalid state {slug}. Expected one of: {choices}."])
        if kind == "choice":
            labels = {str(code): label for label, code in CHECK_STATES.items()}
            if str(value) in labels:
                return labels[str(value)]
            raise _FieldError([f'"{value}" is not a valid choice.'])
        # nested (a user's settings)
        if not isinstance(value, (dict, _Form)):
            kind_name = type(value).__name__
            raise _FieldError(
                {"detail": [f"Invalid data. Expected a dictionary, but got {kind_name}."]}
            )
        return self._validate_fields(field.fields, value, partial, user, {})

    def _pk(self, res: str, value: Any) -> int:
        """DRF's ``PrimaryKeyRelatedField`` over Django's integer lookup."""
        try:
            if isinstance(value, bool):
                raise TypeError
            number = int(value)
        except (TypeError, ValueError):
            kind = type(value).__name__
            raise _FieldError([f"Incorrect type. Expected pk value, received {kind}."]) from None
        if abs(number) > _MAX_SQLITE_INT:
            raise _ServerError  # SQLite: "Python int too large to convert"
        if number not in self._objects[res]:
            raise _FieldError([f'Invalid pk "{value}" - object does not exist.'])
        return number

    def _validate_delegate(self, patch: dict[str, Any], value: int | None) -> int | None:
        if value is not None and not self._maintains(value, patch["project"]):
            username = self._objects["users"][value]["username"]
            project = self._objects["projects"][patch["project"]]["name"]
            raise _FieldError([f"User '{username}' is not a maintainer for project '{project}'"])
        return value

    def _validate_bundle_patches(self, value: list[int]) -> list[int]:
        if not value:
            raise _FieldError(["Bundles cannot be empty"])
        if len({self._objects["patches"][p]["project"] for p in value}) > 1:
            raise _FieldError(["Bundle patches must belong to the same project"])
        return value

    # The changes

    def _update_patch(self, patch: dict[str, Any], validated: dict[str, Any], user: int) -> None:
        """``PatchDetailSerializer.update`` and the events of its saves."""
        pid = patch["id"]
        patches = self._objects["patches"]
        left = False  # the saved patch leaves a relation of more than two
        if "related" in validated:
            ids = validated.pop("related")
            self._require_maintainer(user, [pid])
            # A set of patches: Python iterates model instances as their ids.
            members = set(ids)
            rid = patch["_relation"]
            if rid is not None:
                members = members.union(
                    sorted(self._relations[rid], key=lambda i: (patches[i]["_date"], i))
                )
            self._require_maintainer(user, members)
            if not ids:
                if rid is not None and len(self._relations[rid]) == 2:
                    # Deleted before the patch is saved: no change, no event.
                    for member in self._relations.pop(rid):
                        patches[member]["_relation"] = None
                elif rid is not None:
                    self._relations[rid].discard(pid)
                    patch["_relation"] = None
                    left = True
            else:
                relations = {patches[m]["_relation"] for m in members} - {None}
                if len(relations) > 1:
                    raise _Http(409, RELATION_CONFLICT)
                target = relations.pop() if relations else self._new_relation(set())
                for member in members:  # saved as themselves: no actor
                    self._join(patches[member], target, None)
                self._join(patch, target, user)
        # One save: pre_save handlers in their order (state, delegate, relation).
        if "state" in validated:
            self.set_state(pid, validated.pop("state"), user)
        if "delegate" in validated:
            self.set_delegate(pid, validated.pop("delegate"), user)
        if left:
            self._event(
                "patch-relation-changed",
                patch["project"],
                actor=user,
                patch=pid,
                previous_relation=None,
                current_relation=None,
            )
        patch.update(validated)  # commit_ref, pull_url, archived: no events

    def _require_maintainer(self, user: int, patch_ids: Iterable[int]) -> None:
        patches = self._objects["patches"]
        if any(not self._maintains(user, patches[p]["project"]) for p in patch_ids):
            raise _Http(403, NOT_MAINTAINER)

    def _join(self, patch: dict[str, Any], rid: int, actor: int | None) -> None:
        if patch["_relation"] == rid:
            return
        patch["_relation"] = rid
        self._relations[rid].add(patch["id"])
        self._event(
            "patch-relation-changed",
            patch["project"],
            actor=actor,
            patch=patch["id"],
            previous_relation=None,
            current_relation=None,
        )

    def _create_check(
        self, route: _Route, user: int | None, data: Callable[[], Any], ctx: _Ctx
    ) -> tuple[int, Any, dict[str, str]]:
        patch = self._objects["patches"].get(route.parent or 0)
        if patch is None:
            raise _Http(404, "No Patch matches the given query.")
        if not self._patch_editable(patch, user):
            raise _Http(403, DENIED)  # raised by the view: anonymous or not
        payload = data()
        # CheckSerializer.run_validation: a state, named by its label.
        if isinstance(payload, (dict, _Form)):
            if "state" not in payload or payload["state"] == "":
                raise _FieldError({"state": ["A check must have a state."]})
            if isinstance(payload["state"], str) and payload["state"] in CHECK_STATES:
                payload["state"] = CHECK_STATES[payload["state"]]
        elif isinstance(payload, (list, str)) and "state" not in payload:
            raise _FieldError({"state": ["A check must have a state."]})
        else:
            raise _ServerError  # ``'state' in data`` or ``data['state']`` fails
        validated = self._validate("checks", payload, False, user)
        check_id = self.add_check(
            patch["id"],
            validated["user"],
            validated.get("state", "pending"),
            validated.get("context", "default"),
            validated.get("target_url"),
            validated.get("description"),
        )
        check = self._objects["checks"][check_id]
        body = self._render_obj("checks", check, ctx, True, user)
        return 201, body, {"Location": body["url"]}

    def _create_bundle(
        self, user: int | None, data: Callable[[], Any], ctx: _Ctx
    ) -> tuple[int, Any, dict[str, str]]:
        assert user is not None
        hooks = {"patches": self._validate_bundle_patches}
        validated = self._validate("bundles", data(), False, user, hooks)
        patch_ids = list(dict.fromkeys(validated["patches"]))
        if self._bundle_named(user, validated["name"]) is not None:
            raise _ServerError  # the unique (owner, name) constraint
        project = self._objects["patches"][patch_ids[0]]["project"]
        public = bool(validated.get("public", False))
        bundle_id = self.create_bundle(project, user, validated["name"], patch_ids, public)
        body = self._render_obj("bundles", self._objects["bundles"][bundle_id], ctx, True, user)
        return 201, body, {"Location": body["url"]}

    def _bundle_named(self, owner: int, name: str) -> int | None:
        for bundle in self._objects["bundles"].values():
            if bundle["owner"] == owner and bundle["name"] == name:
                return int(bundle["id"])
        return None

    def _update_bundle(self, bundle: dict[str, Any], validated: dict[str, Any]) -> None:
        if "name" in validated and self._bundle_named(bundle["owner"], validated["name"]) not in (
            None,
            bundle["id"],
        ):
            raise _ServerError
        changes: dict[str, Any] = {k: validated[k] for k in ("name", "public") if k in validated}
        if validated.get("patches"):
            patch_ids = list(dict.fromkeys(validated["patches"]))
            changes["project"] = self._objects["patches"][patch_ids[0]]["project"]
            changes["patches"] = patch_ids
        self.update("bundles", bundle["id"], **changes)

    def _visible_bundle(self, bundle: dict[str, Any], user: int | None) -> bool:
        return bool(bundle["public"]) or (user is not None and bundle["owner"] == user)

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
    # The clock and new objects

    @property
    def now(self) -> dt.datetime:
        """The fake clock: the date of the latest event."""
        with self._lock:
            return self._clock

    def advance(self, seconds: float) -> None:
        """Move the fake clock forward (say, to age events)."""
        with self._lock:
            self._clock += dt.timedelta(seconds=seconds)

    def _tick(self) -> dt.datetime:
        self._clock += dt.timedelta(microseconds=2_347)
        return self._clock

    def _mail_date(self) -> dt.datetime:
        """A mail's Date: whole seconds, increasing, not after the clock."""
        self._mail_clock = max(
            self._mail_clock + dt.timedelta(seconds=1), self._clock.replace(microsecond=0)
        )
        return self._mail_clock

    def _new_id(self, res: str) -> int:
        obj_id = self._next_id[res]
        self._next_id[res] += 1
        return obj_id

    def _event(self, category: str, project: int, actor: int | None = None, **refs: Any) -> int:
        """Record an event as Patchwork's signal handlers do."""
        when = self._tick()
        event: dict[str, Any] = {
            "id": self._new_id("events"),
            "category": category,
            "project": project,
            "date": _iso(when),
            "_date": when,
            "actor": actor,
        }
        for key in EVENT_PAYLOADS[category]:
            event[key] = refs.get(key)
        self._store("events", event)
        return int(event["id"])

    def _require(self, res: str, obj_id: int | None) -> dict[str, Any]:
        if obj_id is None or obj_id not in self._objects[res]:
            raise KeyError(f"no {MODELS.get(res, res)} {obj_id}")
        return self._objects[res][obj_id]

    def add_person(self, name: str | None, email: str, user_id: int | None = None) -> int:
        """A new person (no event: people have none)."""
        with self._lock:
            if user_id is not None:
                self._require("users", user_id)
            person: dict[str, Any] = {
                "id": self._new_id("people"),
                "name": name,
                "email": email,
                "user": user_id,
            }
            self._store("people", person)
            return int(person["id"])

    def _submitter(self, submitter: int | tuple[str, str] | None) -> int:
        if isinstance(submitter, int):
            self._require("people", submitter)
            return submitter
        if submitter is None:
            number = self._next_id["people"]
            submitter = (f"Fake Submitter {number}", f"submitter{number}@example.org")
        return self.add_person(*submitter)

    def _mail(
        self, project: dict[str, Any], submitter: int, subject: str, kind: str, when: dt.datetime
    ) -> tuple[str, dict[str, str]]:
        person = self._objects["people"][submitter]
        domain = person["email"].rpartition("@")[2] or "example.org"
        # Like the recorded ones: a (UTC) timestamp, whatever the local zone.
        stamp = when.replace(tzinfo=dt.UTC).timestamp()
        msgid = f"<{stamp:.0f}.{self._clock.microsecond:06d}-{kind}@{domain}>"
        sender = f"{person['name']} <{person['email']}>" if person["name"] else person["email"]
        headers = {
            "From": sender,
            "Subject": subject,
            "Date": email.utils.format_datetime(when),
            "Message-Id": msgid,
            "List-Id": f"<{project['list_id']}>",
            "To": project["list_email"],
        }
        return msgid, headers

    def new_series(
        self,
        project_id: int,
        submitter_id: int | tuple[str, str] | None = None,
        *,
        n_patches: int = 3,
        cover: bool = True,
        name: str | None = None,
        version: int = 1,
        total: int | None = None,
    ) -> dict[str, Any]:
        """A series arriving by mail, with Patchwork's events in its order.

        ``submitter_id``: a person id, or (name, email) of a new person, or
        None for a new person.  With ``total`` above ``n_patches`` the
        series stays incomplete (see :meth:`add_series_patch`).

        Events, as the recorded instance emitted them: with a cover,
        series-created, cover-created, then per patch patch-created and
        patch-completed, then series-completed; without one the first
        patch's patch-created comes before series-created.  Returns the
        ids: ``series``, ``cover`` (or None), ``patches``, ``submitter``,
        ``events``.
        """
        with self._lock:
            self._require("projects", project_id)
            person = self._submitter(submitter_id)
            total = max(total or n_patches, n_patches)
            series_id = self._next_id["series"]
            subject = name or f"Fake change {series_id}"
            first_event = self._next_id["events"]
            cover_id = None
            series: dict[str, Any] = {
                "id": self._new_id("series"),
                "project": project_id,
                "name": None,
                "date": None,
                "submitter": person,
                "version": version,
                "total": total,
                "cover_letter": None,
                "dependencies": [],
                "_subject": subject,
            }
            if cover:
                when = self._mail_date()
                series["date"], series["_date"] = _iso(when), when
                series["name"] = subject
                self._store("series", series)
                self._event("series-created", project_id, series=series_id)
                cover_id = self._new_cover(series, subject, when)
            patch_ids = []
            for number in range(1, n_patches + 1):
                patch_ids.append(self._new_patch(series, number, subject, cover_id))
            return {
                "series": series_id,
                "cover": cover_id,
                "patches": patch_ids,
                "submitter": person,
                "events": list(range(first_event, self._next_id["events"])),
            }

    def add_series_patch(self, series_id: int, number: int | None = None) -> int:
        """One more patch of a series (the next number unless told)."""
        with self._lock:
            series = self._require("series", series_id)
            members = self._series_patches.get(series_id, [])
            numbers = {self._objects["patches"][p]["_number"] for p in members}
            if number is None:
                number = max((n for n in numbers if n), default=0) + 1
            if number in numbers:
                raise ValueError(f"series {series_id} has a patch {number} already")
            subject = series.get("_subject") or (series["name"] or "").split("] ", 1)[-1]
            return self._new_patch(series, number, subject, series["cover_letter"])

    def _prefix(self, series: dict[str, Any], number: int | None) -> str:
        parts = [f"v{series['version']}"] if series["version"] > 1 else []
        if number is not None and series["total"] > 1:
            parts.append(f"{number}/{series['total']}")
        return f"[{','.join(parts)}] " if parts else ""

    def _new_cover(self, series: dict[str, Any], subject: str, when: dt.datetime) -> int:
        project = self._objects["projects"][series["project"]]
        name = self._prefix(series, 0) + subject
        msgid, headers = self._mail(project, series["submitter"], _subject(name), "cover", when)
        cover = {
            "id": self._new_id("covers"),
            "project": series["project"],
            "msgid": msgid,
            "date": _iso(when),
            "_date": when,
            "name": name,
            "submitter": series["submitter"],
            "headers": headers,
            "content": f"This series changes {series['total']} files.",
            "_series": None,
        }
        self._store("covers", cover)
        series["cover_letter"] = cover["id"]
        cover["_series"] = series["id"]
        self._event("cover-created", series["project"], cover=cover["id"])
        return int(cover["id"])

    def _new_patch(
        self, series: dict[str, Any], number: int, subject: str, cover_id: int | None
    ) -> int:
        """Patchwork's parser: create the patch, then add it to its series."""
        project_id = series["project"]
        project = self._objects["projects"][project_id]
        when = self._mail_date()
        name = self._prefix(series, number) + f"{subject} (part {number})"
        msgid, headers = self._mail(
            project, series["submitter"], _subject(name), f"patch{number}", when
        )
        if cover_id is not None:
            cover_msgid = self._objects["covers"][cover_id]["msgid"]
            headers = {
                **{k: v for k, v in headers.items() if k not in ("List-Id", "To")},
                "In-Reply-To": cover_msgid,
                "References": cover_msgid,
                "List-Id": headers["List-Id"],
                "To": headers["To"],
            }
        diff = (
            f"diff --git a/fake/file{number}.txt b/fake/file{number}.txt\n"
            f"--- a/fake/file{number}.txt\n+++ b/fake/file{number}.txt\n"
            f"@@ -1 +1 @@\n-old {series['id']}.{number}\n+new {series['id']}.{number}\n"
        )
        patch = {
            "id": self._new_id("patches"),
            "project": project_id,
            "msgid": msgid,
            "date": _iso(when),
            "_date": when,
            "name": name,
            "commit_ref": None,
            "pull_url": None,
            "state": self.states[0].slug,
            "archived": False,
            "hash": hashlib.sha1(diff.encode()).hexdigest(),
            "submitter": series["submitter"],
            "delegate": None,
            "tags": {},
            "headers": headers,
            "content": f"Signed-off-by: {headers['From']}\n---\n fake/file{number}.txt | 2 +-",
            "diff": diff,
            "prefixes": self._prefix(series, number).strip(" []").split(",")
            if self._prefix(series, number)
            else [],
            "_series": None,
            "_number": None,
            "_relation": None,
        }
        self._store("patches", patch)
        pid = int(patch["id"])
        self._event("patch-created", project_id, patch=pid)
        if series["id"] not in self._objects["series"]:
            # The first mail of a series without a cover creates it.
            series["date"], series["_date"] = _iso(when), when
            self._store("series", series)
            self._event("series-created", project_id, series=series["id"])
        members = self._series_patches.get(series["id"], [])
        received = len(members)
        numbers = {self._objects["patches"][p]["_number"] for p in members}
        # Series.add_patch: a series without a name takes its first patch's.
        if not series["name"] and number == 1:
            series["name"] = name
        # pre_save of the patch: patch-completed (if its predecessors are all
        # in), for it and the successors it completes; then series-completed.
        if all(n in numbers for n in range(1, number)):
            self._event("patch-completed", project_id, patch=pid, series=series["id"])
            successor = number + 1
            for other in sorted(members, key=lambda p: self._objects["patches"][p]["_number"] or 0):
                if self._objects["patches"][other]["_number"] == successor:
                    self._event("patch-completed", project_id, patch=other, series=series["id"])
                    successor += 1
        if received + 1 >= series["total"]:
            self._event("series-completed", project_id, series=series["id"])
        patch["_series"], patch["_number"] = series["id"], number
        self._series_patches.setdefault(series["id"], []).append(pid)
        self._series_patches[series["id"]].sort()
        return pid

    def add_patch_comment(
        self, patch_id: int, submitter_id: int | tuple[str, str] | None = None
    ) -> int:
        """A reply to a patch: patch-comment-created (no ``addressed``)."""
        with self._lock:
            return self._new_comment("patch-comments", patch_id, submitter_id)

    def add_cover_comment(
        self, cover_id: int, submitter_id: int | tuple[str, str] | None = None
    ) -> int:
        """A reply to a cover letter: cover-comment-created.

        Patch and cover comments are two tables: two id sequences.
        """
        with self._lock:
            return self._new_comment("cover-comments", cover_id, submitter_id)

    def _new_comment(
        self, res: str, parent_id: int, submitter: int | tuple[str, str] | None
    ) -> int:
        parent_res, parent_key = PARENTS[res]
        parent = self._require(parent_res, parent_id)
        person = self._submitter(submitter)
        project = self._objects["projects"][parent["project"]]
        when = self._mail_date()
        msgid, headers = self._mail(project, person, "", "reply", when)
        subject = "Re: " + parent["headers"].get("Subject", parent["name"])
        headers["Subject"] = subject
        headers = {
            **{k: v for k, v in headers.items() if k not in ("List-Id", "To")},
            "In-Reply-To": parent["msgid"],
            "References": parent["msgid"],
            "List-Id": headers["List-Id"],
            "To": headers["To"],
        }
        comment = {
            "id": self._new_id(res),
            "msgid": msgid,
            "date": _iso(when),
            "_date": when,
            "subject": subject,
            "submitter": person,
            "content": f"On {parent['headers'].get('Date', '')} someone wrote:\n\nLooks good.",
            "headers": headers,
            "addressed": None,
            parent_key: parent_id,
        }
        self._store(res, comment)
        self._comment_event(res, comment)
        return int(comment["id"])

    def _comment_event(self, res: str, comment: dict[str, Any]) -> None:
        parent_res, parent_key = PARENTS[res]
        parent_id = comment[parent_key]
        project = self._objects[parent_res][parent_id]["project"]
        if res == "patch-comments":
            self._event("patch-comment-created", project, patch=parent_id, comment=comment["id"])
        else:
            self._event("cover-comment-created", project, cover=parent_id, comment=comment["id"])

    def set_comment_addressed(self, kind: str, comment_id: int, value: bool | None) -> None:
        """Patchwork 3.x emits *-comment-created on every save of a comment."""
        with self._lock:
            res = "patch-comments" if kind in ("patch", "patch-comments") else "cover-comments"
            comment = self._require(res, comment_id)
            comment["addressed"] = value
            self._comment_event(res, comment)

    def add_check(
        self,
        patch_id: int,
        user_id: int,
        state: str,
        context: str = "default",
        target_url: str | None = None,
        description: str | None = None,
    ) -> int:
        """A check result: check-created, by the check's user."""
        with self._lock:
            patch = self._require("patches", patch_id)
            self._require("users", user_id)
            if state not in CHECK_STATES:
                raise ValueError(f"invalid check state {state!r}")
            when = self._tick()
            check: dict[str, Any] = {
                "id": self._new_id("checks"),
                "user": user_id,
                "date": _iso(when),
                "_date": when,
                "state": state,
                "target_url": target_url,
                "context": context,
                "description": description,
                "_patch": patch_id,
            }
            self._store("checks", check)
            self._event(
                "check-created", patch["project"], actor=user_id, patch=patch_id, check=check["id"]
            )
            return int(check["id"])

    def set_state(self, patch_id: int, state: str | int, actor_id: int | None = None) -> None:
        """patch-state-changed, if the state changes."""
        with self._lock:
            patch = self._require("patches", patch_id)
            new = self.state(state).slug
            old = patch["state"]
            if new == old:
                return
            patch["state"] = new
            self._event(
                "patch-state-changed",
                patch["project"],
                actor=actor_id,
                patch=patch_id,
                previous_state=old,
                current_state=new,
            )

    def set_delegate(self, patch_id: int, user_id: int | None, actor_id: int | None = None) -> None:
        """patch-delegated, if the delegate changes."""
        with self._lock:
            patch = self._require("patches", patch_id)
            if user_id is not None:
                self._require("users", user_id)
            old = patch["delegate"]
            if old == user_id:
                return
            patch["delegate"] = user_id
            self._event(
                "patch-delegated",
                patch["project"],
                actor=actor_id,
                patch=patch_id,
                previous_delegate=old,
                current_delegate=user_id,
            )

    def set_related(self, patch_ids: Iterable[int], actor_id: int | None = None) -> None:
        """Make ``patch_ids`` exactly one relation; one id alone leaves its relation.

        Patchwork emits patch-relation-changed for a patch whose relation
        (the row it points to) changes, not for patches whose list of
        related patches merely changes: a patch joining gets one, the
        members already in do not; a patch leaving gets one, the ones
        staying do not, except that a relation of two is deleted before the
        leaving patch is saved, so neither gets an event.  The first
        id is the patch edited (its events carry ``actor_id``); the others
        are saved as a side effect (actor null), before it, as Patchwork
        does.  Patches in two different relations conflict (Patchwork
        answers 409): remove them from one first.
        """
        with self._lock:
            ids = list(dict.fromkeys(patch_ids))
            patches = [self._require("patches", pid) for pid in ids]
            if len(ids) == 1:
                self._leave_relation(patches[0], actor_id)
                return
            relations = {p["_relation"] for p in patches if p["_relation"] is not None}
            if len(relations) > 1:
                raise ValueError("patches are in different relations; remove them first")
            rid = relations.pop() if relations else None
            if rid is not None:
                for pid in sorted(self._relations[rid] - set(ids)):
                    self._leave_relation(self._objects["patches"][pid], actor_id)
                rid = patches[0]["_relation"] or next(
                    (p["_relation"] for p in patches if p["_relation"]), None
                )
            if rid is None:
                rid = self._new_relation(set())
            edited, others = patches[0], sorted(patches[1:], key=lambda p: p["id"])
            for patch, actor in [*((p, None) for p in others), (edited, actor_id)]:
                self._relations[rid].add(patch["id"])
                if patch["_relation"] != rid:
                    patch["_relation"] = rid
                    self._event(
                        "patch-relation-changed",
                        patch["project"],
                        actor=actor,
                        patch=patch["id"],
                        previous_relation=None,
                        current_relation=None,
                    )

    def _leave_relation(self, patch: dict[str, Any], actor_id: int | None) -> None:
        rid = patch["_relation"]
        if rid is None:
            return
        members = self._relations[rid]
        if len(members) <= 2:
            # Patchwork deletes a relation that would keep one patch before
            # it saves the patch, which then shows no change: no event.
            for pid in members:
                self._objects["patches"][pid]["_relation"] = None
            del self._relations[rid]
            return
        members.discard(patch["id"])
        patch["_relation"] = None
        self._event(
            "patch-relation-changed",
            patch["project"],
            actor=actor_id,
            patch=patch["id"],
            previous_relation=None,
            current_relation=None,
        )

    # Changes without events -------------------------------------------

    # Patchwork's pre_save handlers compare only state, delegate, relation
    # and series: saving anything else emits nothing.

    def set_archived(self, patch_id: int, archived: bool = True) -> None:
        """Archive a patch (or bring it back): no event."""
        with self._lock:
            self._require("patches", patch_id)["archived"] = bool(archived)

    def set_commit_ref(self, patch_id: int, value: str | None) -> None:
        """The commit a patch was merged as: no event."""
        with self._lock:
            self._require("patches", patch_id)["commit_ref"] = value

    def set_pull_url(self, patch_id: int, value: str | None) -> None:
        """No event."""
        with self._lock:
            self._require("patches", patch_id)["pull_url"] = value

    def rename(self, resource: str, obj_id: int, name: str | None) -> None:
        """A new name for a patch, cover, series, bundle or project: no event,
        but every embedded copy shows it (they render at request time)."""
        if resource not in ("patches", "covers", "series", "bundles", "projects"):
            raise ValueError(f"cannot rename {resource}")
        with self._lock:
            self._require(resource, obj_id)["name"] = name

    def rename_person(self, person_id: int, name: str | None) -> None:
        """No event; submitters embedded everywhere show the new name."""
        with self._lock:
            self._require("people", person_id)["name"] = name

    def link_person(self, person_id: int, user_id: int | None) -> None:
        """Attach a person to a user account (or detach with None): no event."""
        with self._lock:
            if user_id is not None:
                self._require("users", user_id)
            self._require("people", person_id)["user"] = user_id

    #: Fields whose change Patchwork signals: use the setters instead.
    _SIGNALLED = {"state", "delegate", "related", "_relation", "_series", "_number"}

    def update(self, resource: str, obj_id: int, **fields: Any) -> None:
        """Change stored fields; none of these changes emits an event.

        Reference fields take ids (a project's ``maintainers``, a bundle's
        ``patches``, a person's ``user``...).  Derived fields (URLs, a
        patch's ``check``, a series' ``received_total``) cannot be set.
        """
        with self._lock:
            obj = self._require(resource, obj_id)
            for key, value in fields.items():
                if resource == "patches" and key in self._SIGNALLED:
                    raise ValueError(f"use the setter for a patch's {key}")
                if key in DERIVED.get(resource, ()) or key == "id":
                    raise ValueError(f"{resource}.{key} is derived")
                if key not in obj and not (resource == "users" and key in SELF_ONLY):
                    raise ValueError(f"{resource} have no field {key}")
                obj[key] = value
                if key == "date":
                    obj["_date"] = _parse_date(value)

    def create_bundle(
        self,
        project_id: int,
        owner_id: int,
        name: str,
        patch_ids: Iterable[int],
        public: bool = False,
    ) -> int:
        """A new bundle (no event)."""
        with self._lock:
            self._require("projects", project_id)
            self._require("users", owner_id)
            patches = [self._require("patches", pid)["id"] for pid in patch_ids]
            bundle: dict[str, Any] = {
                "id": self._new_id("bundles"),
                "project": project_id,
                "name": name,
                "owner": owner_id,
                "patches": patches,
                "public": public,
            }
            self._store("bundles", bundle)
            return int(bundle["id"])

    def delete_bundle(self, bundle_id: int) -> None:
        """No event (bundles have none)."""
        self.delete("bundles", bundle_id)

    # Deletions ----------------------------------------------------------

    def delete(self, resource: str, obj_id: int, *, detach: bool = False) -> None:
        """Delete an object and cascade as Patchwork's models do.

        A patch takes its comments, checks and events (and leaves series,
        bundles and its relation); a comment or check its events; a series
        its events and, as ``Patch.series`` cascades, its patches; a cover
        its comments, its events and, as ``Series.cover_letter`` cascades,
        its series with that series' patches.  With ``detach`` a series
        leaves its patches (their ``series`` empties) and a cover leaves its
        series (``cover_letter`` null) instead, as if those foreign keys
        were nullable: not what Patchwork does, but handy for tests.
        """
        with self._lock:
            self._require(resource, obj_id)
            self._delete(resource, obj_id, detach)

    def _delete(self, res: str, obj_id: int, detach: bool) -> None:
        o = self._objects
        obj = o[res].pop(obj_id, None)
        if obj is None:
            return
        if res == "patches":
            for child in ("patch-comments", "checks"):
                for cid in list(self._children[child].get(obj_id, [])):
                    self._delete(child, cid, detach)
                self._children[child].pop(obj_id, None)
            self._drop_events(lambda e: e.get("patch") == obj_id)
            siblings = self._series_patches.get(obj["_series"], [])
            if obj_id in siblings:
                siblings.remove(obj_id)
            for bundle in o["bundles"].values():
                if obj_id in bundle["patches"]:
                    bundle["patches"] = [p for p in bundle["patches"] if p != obj_id]
            if obj["_relation"] is not None:
                self._relations[obj["_relation"]].discard(obj_id)
        elif res == "covers":
            for cid in list(self._children["cover-comments"].get(obj_id, [])):
                self._delete("cover-comments", cid, detach)
            self._children["cover-comments"].pop(obj_id, None)
            self._drop_events(lambda e: e.get("cover") == obj_id)
            series_id = obj["_series"]
            if series_id is not None:
                if detach:
                    o["series"][series_id]["cover_letter"] = None
                else:
                    self._delete("series", series_id, detach)
        elif res == "series":
            self._drop_events(lambda e: e.get("series") == obj_id)
            for pid in list(self._series_patches.pop(obj_id, [])):
                if detach:
                    o["patches"][pid]["_series"] = None
                    o["patches"][pid]["_number"] = None
                else:
                    self._delete("patches", pid, detach)
            if obj["cover_letter"] is not None and obj["cover_letter"] in o["covers"]:
                o["covers"][obj["cover_letter"]]["_series"] = None
            for other in o["series"].values():
                if obj_id in other.get("dependencies", []):
                    other["dependencies"] = [d for d in other["dependencies"] if d != obj_id]
        elif res in PARENTS:
            parent = obj[PARENTS[res][1]]
            siblings = self._children[res].get(parent, [])
            if obj_id in siblings:
                siblings.remove(obj_id)
            if res == "checks":
                self._drop_events(lambda e: e.get("check") == obj_id)
            else:
                category = (
                    "patch-comment-created"
                    if res == "patch-comments"
                    else ("cover-comment-created")
                )
                self._drop_events(
                    lambda e: e["category"] == category and e.get("comment") == obj_id
                )
        elif res == "events" or res == "bundles":
            pass
        else:
            o[res][obj_id] = obj
            raise ValueError(f"cannot delete {res}")

    def _drop_events(self, doomed: Callable[[dict[str, Any]], bool]) -> None:
        events = self._objects["events"]
        for event_id in [i for i, e in events.items() if doomed(e)]:
            del events[event_id]

    def purge_events_before(self, date: dt.datetime | str) -> int:
        """Delete events older than ``date`` (Patchwork 4.0 purges by age)."""
        bound = _parse_date(date) if isinstance(date, str) else date
        with self._lock:
            before = len(self._objects["events"])
            self._drop_events(lambda e: e["_date"] < bound)
            return before - len(self._objects["events"])


# ----------------------------------------------------------------------
# XML-RPC: ``patchwork/views/xmlrpc.py``

XMLRPC_PATH = "/xmlrpc/"
#: The Django field lookups Patchwork's list filters accept.
LOOKUP_TYPES = [
    "iexact",
    "contains",
    "icontains",
    "gt",
    "gte",
    "lt",
    "in",
    "startswith",
    "istartswith",
    "endswith",
    "iendswith",
    "range",
    "year",
    "month",
    "day",
    "isnull",
]


def _named_error(module: str, qualname: str, base: type[Exception] = Exception) -> Any:
    """An exception class that prints as Django's or Patchwork's does in a fault
    (``<class 'patchwork.models.Patch.DoesNotExist'>``)."""
    name = qualname.rpartition(".")[2]
    return type(name, (base,), {"__module__": module, "__qualname__": qualname})


_FieldErr = _named_error("django.core.exceptions", "FieldError")
_ValidationErr = _named_error("django.core.exceptions", "ValidationError")
_IntegrityErr = _named_error("django.db.utils", "IntegrityError")
#: Model -> its DoesNotExist; MultipleObjectsReturned of a patch.
_DOES_NOT_EXIST = {
    model: _named_error("patchwork.models", f"{model}.DoesNotExist")
    for model in ("Project", "Person", "Patch", "State", "Check")
}
_MULTIPLE_PATCHES = _named_error("patchwork.models", "Patch.MultipleObjectsReturned")


def _validation_error(message: str) -> Exception:
    """``str(ValidationError)`` is the repr of its list of messages."""
    return _ValidationErr(str([message]))


def _django_int(value: Any, name: str = "id") -> int | None:
    """``IntegerField.get_prep_value``."""
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise exc.__class__(f"Field '{name}' expected a number but got {value!r}.") from None


def _char(value: Any) -> str | None:
    """``CharField.get_prep_value``."""
    return value if value is None or isinstance(value, str) else str(value)


def _django_bool(value: Any) -> bool:
    """``BooleanField.to_python`` (not null)."""
    if value in (True, False):
        return bool(value)
    if value in ("t", "True", "1"):
        return True
    if value in ("f", "False", "0"):
        return False
    raise _validation_error(f"“{value}” value must be either True or False.")


def _django_datetime(value: Any) -> dt.datetime:
    """``DateTimeField.to_python`` and SQLite's refusal of aware values (USE_TZ off)."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime(value.year, value.month, value.day)
    elif not isinstance(value, str):
        raise TypeError("fromisoformat: argument must be str")
    else:
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            try:
                day = dt.date.fromisoformat(value)
            except ValueError:
                raise _validation_error(
                    f"“{value}” value has an invalid format. It must be in"
                    " YYYY-MM-DD HH:MM[:ss[.uuuuuu]][TZ] format."
                ) from None
            parsed = dt.datetime(day.year, day.month, day.day)
    if parsed.tzinfo is not None:
        raise ValueError(
            "SQLite backend does not support timezone-aware datetimes when USE_TZ is False."
        )
    return parsed


@dataclass(frozen=True)
class _Column:
    """A model field as the XML-RPC filters may query it."""

    #: int, str, bool, date, or fk (a foreign key, looked up by id)
    kind: str
    #: Django's field class, as its FieldError names it
    field: str
    get: Callable[[dict[str, Any]], Any]


_PATCH_COLUMNS = {
    "id": _Column("int", "AutoField", operator.itemgetter("id")),
    "name": _Column("str", "CharField", operator.itemgetter("name")),
    "archived": _Column("bool", "BooleanField", operator.itemgetter("archived")),
    "date": _Column("date", "DateTimeField", operator.itemgetter("_date")),
    "commit_ref": _Column("str", "CharField", operator.itemgetter("commit_ref")),
    "hash": _Column("str", "HashField", operator.itemgetter("hash")),
    "msgid": _Column("str", "CharField", operator.itemgetter("msgid")),
}
_CHECK_COLUMNS = {
    "id": _Column("int", "AutoField", operator.itemgetter("id")),
    "user": _Column("fk", "ForeignKey", operator.itemgetter("user")),
}
_RELATED_LOOKUPS = ("exact", "in", "gt", "gte", "lt", "isnull")
_COMPARISONS = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt}
_PATTERNS = (
    "iexact",
    "contains",
    "icontains",
    "startswith",
    "istartswith",
    "endswith",
    "iendswith",
)
#: Lookups proper (the others of LOOKUP_TYPES are a date's transforms).
_FINAL_LOOKUPS = frozenset(LOOKUP_TYPES) - {"year", "month", "day"} | {"exact"}


def _db_text(kind: str, value: Any) -> str | None:
    """A column's value as SQLite's LIKE sees it."""
    if value is None:
        return None
    if kind == "bool":
        return "1" if value else "0"
    return str(value)


def _like(lookup: str, rhs: Any, text: str | None) -> bool:
    """The pattern lookups: SQLite's LIKE, which folds ASCII case (even ``contains``)."""
    if text is None:
        return False
    needle, hay = _ilower(str(rhs)), _ilower(text)
    if lookup == "iexact":
        return hay == needle
    if lookup in ("contains", "icontains"):
        return needle in hay
    if lookup in ("startswith", "istartswith"):
        return hay.startswith(needle)
    return hay.endswith(needle)


def _matcher(column: _Column, lookups: list[str], value: Any) -> Callable[[dict[str, Any]], bool]:
    """``Model.objects.filter(field__lookup=value)`` for one object, as Django on SQLite."""
    lookups = list(lookups) or ["exact"]
    kind, get, name = column.kind, column.get, "id"
    if kind == "fk":
        if len(lookups) > 1 or lookups[0] not in _RELATED_LOOKUPS:
            raise _FieldErr(f"Related Field got invalid lookup: {lookups[0]}")
    elif lookups[0] in ("year", "month", "day"):
        if kind != "date":
            raise _FieldErr(
                f"Unsupported lookup '{lookups[0]}' for {column.field}"
                " or join on the field not permitted."
            )
        part = lookups.pop(0)
        column_get = get

        def get(obj: dict[str, Any]) -> Any:
            date = column_get(obj)
            return None if date is None else getattr(date, part)

        kind, name, lookups = "int", "None", lookups or ["exact"]
    if len(lookups) > 1 or lookups[0] not in _FINAL_LOOKUPS:
        field = "IntegerField" if name == "None" else column.field
        raise _FieldErr(
            f"Unsupported lookup '{lookups[0]}' for {field} or join on the field not permitted."
        )
    lookup = lookups[0]

    def prep(raw: Any) -> Any:
        if raw is None:
            return None
        if kind in ("int", "fk"):
            return _django_int(raw, name)
        if kind == "bool":
            return _django_bool(raw)
        if kind == "date":
            return _django_datetime(raw)
        return _char(raw)

    if value is None and lookup in ("exact", "iexact"):
        return lambda obj: get(obj) is None
    if value is None and lookup != "isnull":
        raise ValueError("Cannot use None as a query value")
    if lookup == "isnull":
        if not isinstance(value, bool):
            raise ValueError("The QuerySet value for an isnull lookup must be True or False.")
        return lambda obj: (get(obj) is None) is value
    if lookup in _PATTERNS:
        return lambda obj: _like(lookup, value, _db_text(kind, get(obj)))
    if lookup == "in":
        accepted = [v for v in (prep(item) for item in value) if v is not None]
        return lambda obj: get(obj) is not None and get(obj) in accepted
    if lookup == "range":
        low, high = (prep(item) for item in value)
        return lambda obj: get(obj) is not None and low <= get(obj) <= high
    wanted = prep(value)
    compare = _COMPARISONS.get(lookup, operator.eq)
    return lambda obj: get(obj) is not None and compare(get(obj), wanted)


def _where(get: Callable[[dict[str, Any]], Any], wanted: Any) -> Callable[[dict[str, Any]], bool]:
    """An equality filter (a foreign key's ``field=obj``)."""
    return lambda obj: bool(get(obj) == wanted)


def _get_objects(
    serializer: Callable[[Any], dict[str, Any]], objects: list[Any], max_count: Any
) -> list[dict[str, Any]]:
    """Patchwork's ``_get_objects``: the first ``max_count``, or the last ``-max_count``."""
    if max_count > 0:
        return [serializer(x) for x in objects[:max_count]]
    if max_count < 0:
        min_count = len(objects) + max_count
        if min_count < 0:
            raise ValueError("Negative indexing is not supported.")
        return [serializer(x) for x in objects[min_count:]]
    return [serializer(x) for x in objects]


class _PatchMbox(MIMENonMultipart):
    patch_charset = "utf-8"

    def __init__(self, text: str) -> None:
        MIMENonMultipart.__init__(self, "text", "plain", charset=self.patch_charset)
        self.set_payload(text.encode(self.patch_charset))
        encode_7or8bit(self)


_FROM_FORMS: tuple[tuple[re.Pattern[str], Callable[[tuple[Any, ...]], Any]], ...] = (
    (re.compile(r'"?(.*?)"?\s*<([^>]+)>'), lambda g: g[1]),
    (re.compile(r"(.*?)\sat\s(.*?)\s*\(([^\)]+)\)"), lambda g: "@".join(g[0:2])),
    (re.compile(r'"?(.*?)"?\s*\(([^\)]+)\)'), lambda g: g[0]),
    (re.compile(r"(.*)"), lambda g: g[0]),
)
_EMAIL = re.compile(
    r'^[\w!#$%&"*+/=?^`{|}~-]+(?:\.[\w!#$%&"*+/=?^`{|}~-]+)*'
    r"@(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?\.)+"
    r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?$"
)


def _from_address(header: str) -> str | None:
    """The address of ``parser.split_from_header``."""
    for regex, address in _FROM_FORMS:
        match = regex.match(header)
        if match:
            found = address(match.groups())
            return found if _EMAIL.match(found) else None
    return None


_RESPONSE = re.compile(r"^(Tested|Reviewed|Acked|Signed-off|Nacked|Reported)-by:.*$", re.M | re.I)
_POSTSCRIPT = re.compile("^-{2,3} ?$", re.MULTILINE)
_FILENAME = re.compile(r"[^-_A-Za-z0-9\.]+")


class _XmlRpcDocs(SimpleXMLRPCDispatcher, XMLRPCDocGenerator):
    """The page a GET shows, made as Patchwork makes it."""

    def __init__(self, funcs: Mapping[str, Callable[..., Any]]) -> None:
        SimpleXMLRPCDispatcher.__init__(self, allow_none=False, encoding=None)
        XMLRPCDocGenerator.__init__(self)
        self.funcs.update(funcs)


class _XmlRpc:
    """Patchwork's XML-RPC API over a fake: its dispatcher and methods.

    Methods are plain functions of Patchwork's names and signatures (a wrong
    number of arguments is the same TypeError), their answers Patchwork's
    dicts (``str(...).encode()`` values go out as base64, as Patchwork's
    do), their failures Patchwork's (Django's exceptions in a fault, down
    to the ``None`` that ``allow_none=False`` cannot send).  Writes go
    through the fake's mutation methods, so they emit Patchwork's events.
    """

    def __init__(self, fake: FakePatchwork) -> None:
        self.fake = fake
        #: name -> (authentication required, function)
        self.methods: dict[str, tuple[bool, Callable[..., Any]]] = {}
        self._define()

    # The wire

    @staticmethod
    def _dumps(obj: Any, methodresponse: bool = False) -> str:
        return xmlrpc.client.dumps(obj, methodresponse=methodresponse, allow_none=False)

    def dispatch(self, authorization: str | None, body: bytes) -> str:
        """``_marshaled_dispatch``: an answer, or any exception as fault 1."""
        try:
            params, method = xmlrpc.client.loads(body)
            response = self._dispatch(authorization, method, params)
            return self._dumps((response,), methodresponse=True)
        except xmlrpc.client.Fault as fault:
            return self._dumps(fault)
        except Exception as exc:
            return self._dumps(xmlrpc.client.Fault(1, f"{type(exc)}:{exc}"))

    def _dispatch(
        self, authorization: str | None, method: str | None, params: tuple[Any, ...]
    ) -> Any:
        if method not in list(self.methods):
            raise Exception(f'method "{method}" is not supported')
        auth_required, fn = self.methods[method]
        if auth_required:
            user = self._user_for_request(authorization)
            if not user:
                raise Exception("Invalid username/password")
            params = (user, *params)
        return fn(*params)

    def _user_for_request(self, auth_header: str | None) -> int | None:
        """HTTP Basic credentials, as ``django.contrib.auth.authenticate`` takes them:
        ``pw-<username>`` with ``tokens`` set, anything (the crawl's identity) without."""
        if auth_header is None or auth_header == "":
            raise Exception("No authentication credentials given")
        header = auth_header.strip()
        if not header.startswith("Basic "):
            raise Exception("Authentication scheme not supported")
        header = header[len("Basic ") :].strip()
        try:
            decoded = base64.b64decode(header.encode("ascii")).decode("ascii")
            username, password = decoded.split(":", 1)
        except ValueError:
            raise Exception("Invalid authentication credentials") from None
        if self.fake.tokens is None:
            return self.fake.identity
        for user in self.fake._objects["users"].values():
            if user["username"] == username and password == f"pw-{username}":
                return int(user["id"])
        return None

    def documentation(self) -> str:
        return str(
            _XmlRpcDocs(
                {k: fn for k, (_, fn) in self.methods.items()}
            ).generate_html_documentation()
        )

    # Lookups

    def _get(self, model: str, res: str, value: Any) -> dict[str, Any]:
        """``Model.objects.get(id=value)``."""
        number = _django_int(value)
        obj = None if number is None else self.fake._objects[res].get(number)
        if obj is None:
            raise _DOES_NOT_EXIST[model](f"{model} matching query does not exist.")
        return obj

    def _first(self, res: str, value: Any) -> dict[str, Any]:
        """``Model.objects.filter(id=value)[0]``."""
        number = _django_int(value)
        obj = None if number is None else self.fake._objects[res].get(number)
        if obj is None:
            raise IndexError("list index out of range")
        return obj

    def _state(self, value: Any) -> State:
        number = _django_int(value)
        for state in self.fake.states:
            if state.id == number:
                return state
        raise _DOES_NOT_EXIST["State"]("State matching query does not exist.")

    def _ordered(self, res: str) -> list[dict[str, Any]]:
        """Objects in their model's ordering (none: by id)."""
        objects = self.fake._objects[res].values()
        if res == "projects":
            return sorted(objects, key=lambda p: (p["link_name"], p["id"]))
        if res == "patches":
            return sorted(objects, key=lambda p: (p["_date"], p["id"]))
        return sorted(objects, key=operator.itemgetter("id"))

    def _states(self) -> list[State]:
        return sorted(self.fake.states, key=lambda s: (s.ordering, s.id))

    def _unique_checks(self, patch_id: int) -> list[dict[str, Any]]:
        """``Patch.filter_unique_checks``: each (user, context)'s latest check."""
        checks = [
            self.fake._objects["checks"][i] for i in self.fake._children["checks"].get(patch_id, [])
        ]
        unique: dict[tuple[int, str], dict[str, Any]] = {}
        duplicates = set()
        for check in checks:
            key = (check["user"], check["context"])
            if key in unique:
                if unique[key]["_date"] > check["_date"]:
                    duplicates.add(check["id"])
                    continue
                duplicates.add(unique[key]["id"])
            unique[key] = check
        return [c for c in checks if c["id"] not in duplicates]

    # Serializers

    def _user_str(self, user_id: int | None) -> str:
        return "None" if user_id is None else str(self.fake._objects["users"][user_id]["username"])

    def _person_str(self, person_id: int) -> str:
        person = self.fake._objects["people"][person_id]
        return f"{person['name']} <{person['email']}>" if person["name"] else str(person["email"])

    @staticmethod
    def _project_to_dict(obj: dict[str, Any]) -> dict[str, Any]:
        return {"id": obj["id"], "linkname": obj["link_name"], "name": obj["name"]}

    def _person_to_dict(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": obj["id"],
            "email": obj["email"],
            "name": obj["name"] if obj["name"] is not None else obj["email"],
            "user": self._user_str(obj["user"]).encode("utf-8"),
        }

    def _patch_to_dict(self, obj: dict[str, Any]) -> dict[str, Any]:
        state = self.fake.state(obj["state"])
        return {
            "id": obj["id"],
            "date": str(obj["_date"]).encode("utf-8"),
            "filename": _FILENAME.sub("-", str(obj["name"])).strip("-"),
            "msgid": obj["msgid"],
            "name": obj["name"],
            "project": str(self.fake._objects["projects"][obj["project"]]["name"]).encode("utf-8"),
            "project_id": obj["project"],
            "state": state.name.encode("utf-8"),
            "state_id": state.id,
            "archived": obj["archived"],
            "submitter": self._person_str(obj["submitter"]).encode("utf-8"),
            "submitter_id": obj["submitter"],
            "delegate": self._user_str(obj["delegate"]).encode("utf-8"),
            "delegate_id": obj["delegate"] or 0,
            "commit_ref": obj["commit_ref"] or "",
            "hash": obj["hash"] or "",
        }

    @staticmethod
    def _state_to_dict(obj: State) -> dict[str, Any]:
        return {"id": obj.id, "name": obj.name}

    def _check_to_dict(self, obj: dict[str, Any]) -> dict[str, Any]:
        patch = self.fake._objects["patches"][obj["_patch"]]
        return {
            "id": obj["id"],
            "date": str(obj["_date"]).encode("utf-8"),
            "patch": str(patch["name"]).encode("utf-8"),
            "patch_id": obj["_patch"],
            "user": self._user_str(obj["user"]).encode("utf-8"),
            "user_id": obj["user"],
            "state": obj["state"],
            "target_url": obj["target_url"],
            "description": obj["description"],
            "context": obj["context"],
        }

    def _patch_to_mbox(self, patch: dict[str, Any]) -> str:
        """``views.utils.patch_to_mbox``, as the mbox download makes it."""
        return self.fake._submission_mbox("patches", patch)

    # The methods

    def _register(self, auth: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            fn.__qualname__ = fn.__name__  # TypeErrors name it as Patchwork's
            self.methods[fn.__name__] = (auth, fn)
            return fn

        return wrap

    def _define(self) -> None:
        fake = self.fake
        o = fake._objects
        register = self._register

        @register()
        def pw_rpc_version() -> Any:
            """Return Patchwork XML-RPC interface version."""
            return (1, 3, 0)

        @register()
        def project_list(search_str: Any = None, max_count: Any = 0) -> Any:
            """List projects matching a given linkname filter."""
            projects = self._ordered("projects")
            if search_str:
                projects = [p for p in projects if _like("icontains", search_str, p["link_name"])]
            return _get_objects(self._project_to_dict, projects, max_count)

        @register()
        def project_get(project_id: Any) -> Any:
            """Get a project by its ID."""
            try:
                return self._project_to_dict(self._get("Project", "projects", project_id))
            except _DOES_NOT_EXIST["Project"]:
                return {}

        @register()
        def person_list(search_str: Any = None, max_count: Any = 0) -> Any:
            """List persons matching a given name or email filter."""
            people = self._ordered("people")
            if search_str:
                people = [
                    p
                    for p in people
                    if _like("icontains", search_str, p["name"])
                    or _like("icontains", search_str, p["email"])
                ]
            return _get_objects(self._person_to_dict, people, max_count)

        @register()
        def person_get(person_id: Any) -> Any:
            """Get a person by its ID."""
            try:
                return self._person_to_dict(self._get("Person", "people", person_id))
            except _DOES_NOT_EXIST["Person"]:
                return {}

        @register()
        def patch_list(filt: Any = None) -> Any:
            """List patches matching all of a given set of filters."""
            if filt is None:
                filt = {}
            ok_fields = [
                "id",
                "name",
                "project_id",
                "submitter_id",
                "delegate_id",
                "archived",
                "state_id",
                "date",
                "commit_ref",
                "hash",
                "msgid",
                "max_count",
            ]
            dfilter: dict[str, Any] = {}
            max_count = 0
            for key in filt:
                parts = key.split("__")
                if parts[0] not in ok_fields:
                    return []
                if len(parts) > 1 and LOOKUP_TYPES.count(parts[1]) == 0:
                    return []
                try:
                    if parts[0] == "project_id":
                        dfilter["project"] = self._get("Project", "projects", filt[key])
                    elif parts[0] == "submitter_id":
                        dfilter["submitter"] = self._get("Person", "people", filt[key])
                    elif parts[0] == "delegate_id":
                        dfilter["delegate"] = self._get("Person", "people", filt[key])
                    elif parts[0] == "state_id":
                        dfilter["state"] = self._state(filt[key])
                    elif parts[0] == "max_count":
                        max_count = filt[key]
                    else:
                        dfilter[key] = filt[key]
                except (
                    _DOES_NOT_EXIST["Project"],
                    _DOES_NOT_EXIST["Person"],
                    _DOES_NOT_EXIST["State"],
                ):
                    return []
            tests: list[Callable[[dict[str, Any]], bool]] = []
            for key, value in dfilter.items():
                if key in ("project", "submitter"):
                    tests.append(_where(operator.itemgetter(key), value["id"]))
                elif key == "state":
                    tests.append(_where(operator.itemgetter("state"), value.slug))
                elif key == "delegate":
                    # ``Patch.delegate`` is a User: Django refuses a Person.
                    person = self._person_str(value["id"])
                    raise ValueError(f'Cannot query "{person}": Must be "User" instance.')
                else:
                    name, *lookups = key.split("__")
                    tests.append(_matcher(_PATCH_COLUMNS[name], lookups, value))
            patches = [p for p in self._ordered("patches") if all(t(p) for t in tests)]
            return _get_objects(self._patch_to_dict, patches, max_count)

        def get_patch(patch_id: Any) -> dict[str, Any]:
            return self._get("Patch", "patches", patch_id)

        def get_patch_by(**wanted: Any) -> dict[str, Any]:
            found = [
                p for p in self._ordered("patches") if all(p[k] == v for k, v in wanted.items())
            ]
            if not found:
                raise _DOES_NOT_EXIST["Patch"]("Patch matching query does not exist.")
            if len(found) > 1:
                raise _MULTIPLE_PATCHES(
                    f"get() returned more than one Patch -- it returned {len(found)}!"
                )
            return found[0]

        @register()
        def patch_get(patch_id: Any) -> Any:
            """Get a patch by its ID."""
            try:
                return self._patch_to_dict(get_patch(patch_id))
            except _DOES_NOT_EXIST["Patch"]:
                return {}

        @register()
        def patch_get_by_hash(hash: Any) -> Any:
            """Get a patch by its hash."""
            try:
                return self._patch_to_dict(get_patch_by(hash=_char(hash)))
            except _DOES_NOT_EXIST["Patch"]:
                return {}

        @register()
        def patch_get_by_project_hash(project: Any, hash: Any) -> Any:
            """Get a patch by its project and hash."""
            linkname = _char(project)
            ids = [p["id"] for p in o["projects"].values() if p["link_name"] == linkname]
            try:
                if not ids:
                    raise _DOES_NOT_EXIST["Patch"]("Patch matching query does not exist.")
                return self._patch_to_dict(get_patch_by(project=ids[0], hash=_char(hash)))
            except _DOES_NOT_EXIST["Patch"]:
                return {}

        @register()
        def patch_get_mbox(patch_id: Any) -> Any:
            """Get a patch by its ID in mbox format."""
            try:
                return self._patch_to_mbox(get_patch(patch_id))
            except _DOES_NOT_EXIST["Patch"]:
                return ""

        @register()
        def patch_get_diff(patch_id: Any) -> Any:
            """Get a patch by its ID in diff format."""
            try:
                return get_patch(patch_id)["diff"]
            except _DOES_NOT_EXIST["Patch"]:
                return ""

        @register(auth=True)
        def patch_set(user: int, patch_id: Any, params: Any) -> Any:
            """Set fields of a patch (state, commit_ref, archived)."""
            ok_params = ["state", "commit_ref", "archived"]
            patch = get_patch(patch_id)
            if not fake._patch_editable(patch, user):
                raise Exception("No permissions to edit this patch")
            changes: dict[str, Any] = {}
            for k, v in params.items():
                if k not in ok_params:
                    continue
                changes[k] = self._state(v) if k == "state" else v
            # ``patch.save()``: each field's value as the database takes it.
            if "archived" in changes:
                if changes["archived"] is None:
                    raise _IntegrityErr("NOT NULL constraint failed: patchwork_patch.archived")
                changes["archived"] = _django_bool(changes["archived"])
            if "commit_ref" in changes:
                changes["commit_ref"] = _char(changes["commit_ref"])
            if "state" in changes:
                fake.set_state(patch["id"], changes["state"].id, user)
            if "commit_ref" in changes:
                fake.set_commit_ref(patch["id"], changes["commit_ref"])
            if "archived" in changes:
                fake.set_archived(patch["id"], changes["archived"])
            return True

        @register()
        def state_list(search_str: Any = None, max_count: Any = 0) -> Any:
            """List states matching a given name filter."""
            states = self._states()
            if search_str:
                states = [s for s in states if _like("icontains", search_str, s.name)]
            return _get_objects(self._state_to_dict, states, max_count)

        @register()
        def state_get(state_id: Any) -> Any:
            """Get a state by its ID."""
            try:
                return self._state_to_dict(self._state(state_id))
            except _DOES_NOT_EXIST["State"]:
                return {}

        @register()
        def check_list(filt: Any = None) -> Any:
            """List checks matching all of a given set of filters."""
            if filt is None:
                filt = {}
            ok_fields = ["id", "user", "project_id", "patch_id", "max_count"]
            dfilter: dict[str, Any] = {}
            max_count = 0
            for key in filt:
                parts = key.split("__")
                if parts[0] not in ok_fields:
                    return []
                if len(parts) > 1 and LOOKUP_TYPES.count(parts[1]) == 0:
                    return []
                # (Patchwork's ``user_id`` branch is unreachable: not an ok field.)
                if parts[0] == "project_id":
                    dfilter["patch__project"] = self._first("projects", filt[key])
                elif parts[0] == "patch_id":
                    dfilter["patch"] = self._first("patches", filt[key])
                elif parts[0] == "max_count":
                    max_count = filt[key]
                else:
                    dfilter[key] = filt[key]
            tests: list[Callable[[dict[str, Any]], bool]] = []
            for key, value in dfilter.items():
                if key == "patch__project":
                    tests.append(
                        _where(lambda c: o["patches"][c["_patch"]]["project"], value["id"])
                    )
                elif key == "patch":
                    tests.append(_where(operator.itemgetter("_patch"), value["id"]))
                else:
                    name, *lookups = key.split("__")
                    tests.append(_matcher(_CHECK_COLUMNS[name], lookups, value))
            checks = [c for c in self._ordered("checks") if all(t(c) for t in tests)]
            return _get_objects(self._check_to_dict, checks, max_count)

        @register()
        def check_get(check_id: Any) -> Any:
            """Get a check by its ID."""
            try:
                return self._check_to_dict(self._get("Check", "checks", check_id))
            except _DOES_NOT_EXIST["Check"]:
                return {}

        @register(auth=True)
        def check_create(
            user: int,
            patch_id: Any,
            context: Any,
            state: Any,
            target_url: Any = "",
            description: Any = "",
        ) -> Any:
            """Add a Check to a patch."""
            patch = get_patch(patch_id)
            if not fake._patch_editable(patch, user):
                raise Exception("No permissions to edit this patch")
            if not any(state == label for label in CHECK_STATES):
                raise Exception(f"Invalid check state: {state}")
            if context is None:
                raise _IntegrityErr("NOT NULL constraint failed: patchwork_check.context")

            fake.add_check(
                patch["id"], user, state, str(context), _char(target_url), _char(description)
            )
            return True

        @register()
        def patch_check_get(patch_id: Any) -> Any:
            """Get a patch's combined checks by its ID."""
            try:
                patch = get_patch(patch_id)
            except _DOES_NOT_EXIST["Patch"]:
                return {}
            checks = self._unique_checks(patch["id"])
            states = {c["state"] for c in checks}
            combined = next((s for s in ("fail", "warning", "pending") if s in states), "success")
            return {
                "state": combined if states else "pending",
                "total": len(checks),
                "checks": [self._check_to_dict(c) for c in checks],
            }
