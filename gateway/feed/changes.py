"""What the feed shows a caller: the log's entries after a cursor, those
the caller may read, filtered, rendered.

Every object whose stored representation changed has an entry, each
change once and in order (mirror.feed): Patchwork's events and more
(archiving, commit refs, renames and states found by sweeps, bundles,
deletions).  What a caller may not read never shows:

* people and users only to callers whose credentials upstream accepts,
  as the API shows them;
* bundles only while public: a public bundle made private shows as
  deleted (it left what the caller may read); a private bundle never
  shows, to anyone, its owner included (the mirror cannot tell who owns
  it: read your own from ``/api/bundles/`` with your token).

A cursor names the mirror's log (its epoch) and a position in it; one
the log no longer reaches, or of another log, is gone (410).
"""

from __future__ import annotations

import datetime
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from multidict import MultiMapping

from gateway.api.endpoints import representation
from mirror.feed import Entry, Windows, cursor, position
from mirror.model import Resource, SelfUrl
from mirror.reader import Reader
from mirror.resources import RESOURCES
from mirror.store import CHANGES_LOW

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: Longest a long-poll may be held (``wait``), in seconds.
MAX_WAIT = 60.0
#: Log rows one read looks at, at most: a filter that matches little
#: answers ``more`` with an advanced cursor rather than scanning on.
SCAN = 2000
SCANS = 5
#: Bytes of expanded objects in one answer (at least one is sent).
EXPAND_BYTES = 8 << 20


class FeedError(Exception):
    """A request the feed answers with a 4xx and ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


GONE = (
    "This cursor is older than what the change log keeps, or from another copy of "
    "the mirror. Catch up by reading the API's lists again, then follow the feed "
    "from the cursor of a request without 'since'."
)


def parse_cursor(text: str, epoch: str) -> int:
    """A position in the log: ``0`` for its start, else a cursor of ours."""
    if text == "0":
        return 0
    found, sep, seq = text.rpartition("-")
    if not sep or not seq.isascii() or not seq.isdigit() or len(seq) > 18:
        raise FeedError(400, "Invalid cursor.")
    if found != epoch:
        raise FeedError(410, GONE)
    return int(seq)


def start(reader: Reader, since: str | None) -> int:
    """Where a cursor stands in the log (None: now; ``0``: the oldest kept)."""
    head, epoch = position(reader)
    if since is None:
        return head
    after = parse_cursor(since, epoch)
    if since == "0":
        after = int(reader.meta(CHANGES_LOW) or 0)
    return after


@dataclass(frozen=True, slots=True)
class Asked:
    """What a request asks of the feed."""

    #: None: from now on (the answer is the current cursor).
    since: str | None
    limit: int
    resources: frozenset[str] | None
    #: Project ids (None: every project, and what has none).
    projects: frozenset[int] | None
    expand: bool
    wait: float


def _one(params: MultiMapping[str], name: str) -> str | None:
    values = params.getall(name, [])
    return values[-1] if values else None


def asked(params: MultiMapping[str], reader: Reader, since: str | None = None) -> Asked:
    """The request's parameters, checked (``since``: a Last-Event-ID)."""
    since = since if since is not None else _one(params, "since")
    limit_text = _one(params, "limit")
    limit = DEFAULT_LIMIT
    if limit_text is not None:
        if not limit_text.isascii() or not limit_text.isdigit() or int(limit_text) < 1:
            raise FeedError(400, "limit: expected a positive integer.")
        limit = min(int(limit_text), MAX_LIMIT)
    names = params.getall("resource", [])
    resources = None
    if names:
        unknown = sorted(set(names) - set(RESOURCES))
        if unknown:
            raise FeedError(
                400, f"resource: no such resource {unknown[0]!r}; one of {', '.join(RESOURCES)}."
            )
        resources = frozenset(names)
    projects = None
    wanted = params.getall("project", [])
    if wanted:
        projects = frozenset(_project_id(reader, name) for name in wanted)
    expand_text = (_one(params, "expand") or "0").lower()
    if expand_text not in ("0", "1", "true", "false"):
        raise FeedError(400, "expand: expected 1 or 0.")
    wait_text = _one(params, "wait") or "0"
    try:
        wait = float(wait_text)
    except ValueError:
        raise FeedError(400, "wait: expected seconds.") from None
    if not 0 <= wait <= MAX_WAIT:
        raise FeedError(400, f"wait: expected seconds from 0 to {MAX_WAIT:g}.")
    return Asked(since, limit, resources, projects, expand_text in ("1", "true"), wait)


def _project_id(reader: Reader, name: str) -> int:
    """A project by link name (or id, as the API's filters take it); one
    the mirror does not have (yet) matches nothing, as in the API."""
    rows = reader.rows("SELECT id FROM projects WHERE linkname = ?", (name,))
    if not rows and name.isascii() and name.isdigit() and len(name) < 19:
        rows = reader.rows("SELECT id FROM projects WHERE id = ?", (int(name),))
    return int(rows[0][0]) if rows else -1


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who reads the feed: anonymous, a caller upstream accepts (people
    and users shown), or a replica (``[server] replication_token``: what
    the mirror holds, private bundles included)."""

    authenticated: bool = False
    everything: bool = False


ANONYMOUS = Viewer()
REPLICA = Viewer(True, True)


def replica(request: web.BaseRequest, token: str) -> bool:
    """Whether the caller presents the replication token (``Bearer``)."""
    if not token:
        return False
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return scheme == "Bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


@dataclass(frozen=True, slots=True)
class Page:
    """One answer: the entries (JSON, with their ``seq``) and where next."""

    entries: list[tuple[int, bytes]]
    next: int
    more: bool
    epoch: str

    def body(self) -> bytes:
        changes = b",".join(entry for _, entry in self.entries)
        tail = orjson.dumps({"next": cursor(self.epoch, self.next), "more": self.more})
        return b'{"changes":[' + changes + b"]," + tail[1:]


def now(reader: Reader) -> Page:
    """The answer without ``since``: nothing, and the cursor of now."""
    head, epoch = position(reader)
    return Page([], head, False, epoch)


async def read(
    windows: Windows,
    asked: Asked,
    after: int,
    viewer: Viewer,
    origin: str,
    max_bytes: int | None = None,
) -> Page:
    """The entries after ``after`` that this caller may read and asked for
    (``max_bytes``: about the most their JSON may take, one at least;
    :data:`EXPAND_BYTES` by default)."""
    max_bytes = EXPAND_BYTES if max_bytes is None else max_bytes
    shown = Shown(windows.reader, asked, viewer, origin)
    entries: list[tuple[int, bytes]] = []
    size = 0
    position = after
    for _ in range(SCANS):
        found = await windows.window(position, SCAN)
        if position < found.low or position > found.head:
            raise FeedError(410, GONE)  # (trimmed past it, or a log restored to before it)
        for entry, body in shown.entries(found.entries):
            entries.append((entry.seq, body))
            size += len(body)
            if len(entries) >= asked.limit or size >= max_bytes:
                return Page(entries, entry.seq, entry.seq < found.head, found.epoch)
        position = found.until
        if position >= found.head:
            break
    return Page(entries, position, position < found.head, found.epoch)


def _self_url(res: Resource) -> str | None:
    """The template of an object's URL in the latest API (None: it has none)."""
    if res.detail_since is None:
        return None
    templates = [f.template for f in res.fields if isinstance(f, SelfUrl)]
    return templates[-1] if templates else None


URLS = {name: _self_url(res) for name, res in RESOURCES.items()}


class Shown:
    """What one caller sees of a window of the log."""

    def __init__(self, reader: Reader, asked: Asked, viewer: Viewer, origin: str) -> None:
        self.reader = reader
        self.asked = asked
        self.viewer = viewer
        self.origin = origin

    def entries(self, entries: list[Entry]) -> Iterable[tuple[Entry, bytes]]:
        """The entries shown, each with its JSON."""
        asked = self.asked
        candidates = [
            e
            for e in entries
            if (asked.resources is None or e.resource in asked.resources)
            and (self.viewer.authenticated or not RESOURCES[e.resource].requires_auth)
        ]
        public = self._public_now(candidates)
        projects = self._projects(candidates)
        names = self._linknames(candidates, projects)
        rendered: dict[tuple[str, int], Any] = {}
        for entry in candidates:
            op = self._op(entry, public)
            project = projects.get(entry.seq)
            if op is None or (asked.projects is not None and project not in asked.projects):
                continue
            template = URLS[entry.resource]
            parent = RESOURCES[entry.resource].parent
            url = None
            if template is not None:
                keys: dict[str, Any] = {"id": entry.id}
                if parent is not None:
                    keys[parent.url_key] = entry.parent_id
                url = f"{self.origin}/api/" + template.format_map(keys)
            shown: dict[str, Any] = {
                "seq": entry.seq,
                "resource": entry.resource,
                "id": entry.id,
                "op": op,
                "project": names.get(project) if project is not None else None,
                "date": _date(entry.at),
                "url": url,
            }
            if asked.expand:
                key = (entry.resource, entry.id)
                if key not in rendered:
                    rendered[key] = self._object(entry, public)
                shown["object"] = rendered[key]
            yield entry, orjson.dumps(shown)

    def _op(self, entry: Entry, public: dict[tuple[str, int], bool]) -> str | None:
        """The change as this caller sees it (None: not at all)."""
        column = RESOURCES[entry.resource].public_column
        if column is None or self.viewer.everything:
            return entry.op
        if entry.cols is not None and column in entry.cols:
            now = bool(entry.cols[column])
        else:  # (a bundle's order: the row as it is)
            now = public.get((entry.resource, entry.id), False)
        if entry.op == "deleted":
            return "deleted" if now else None
        before = bool(entry.was[column]) if entry.was and column in entry.was else now
        if now:
            return entry.op
        return "deleted" if before else None

    def _public_now(self, entries: list[Entry]) -> dict[tuple[str, int], bool]:
        """Whether objects that only some may read are so now (bundles)."""
        wanted: dict[str, set[int]] = {}
        for e in entries:
            if RESOURCES[e.resource].public_column is not None:
                wanted.setdefault(e.resource, set()).add(e.id)
        found: dict[tuple[str, int], bool] = {}
        for name, ids in wanted.items():
            res = RESOURCES[name]
            for obj_id, flag in self._by_id(res.table, f"id, {res.public_column}", ids):
                found[(name, obj_id)] = bool(flag)
        return found

    def _projects(self, entries: list[Entry]) -> dict[int, int | None]:
        """Each entry's project (by ``seq``): its own, or its parent's
        (comments, checks)."""
        parents: dict[str, set[int]] = {}
        for e in entries:
            parent = RESOURCES[e.resource].parent
            if parent is not None and e.parent_id is not None:
                parents.setdefault(parent.resource, set()).add(e.parent_id)
        of_parent: dict[tuple[str, int], int] = {}
        for name, ids in parents.items():
            for obj_id, its in self._by_id(RESOURCES[name].table, "id, project_id", ids):
                of_parent[(name, obj_id)] = its
        found: dict[int, int | None] = {}
        for e in entries:
            parent = RESOURCES[e.resource].parent
            if e.resource == "projects":
                project: int | None = e.id
            elif parent is not None:
                project = of_parent.get((parent.resource, e.parent_id or 0))
            else:
                project = e.project_id
            found[e.seq] = project
        return found

    def _linknames(self, entries: list[Entry], projects: dict[int, int | None]) -> dict[int, str]:
        ids = {p for p in projects.values() if p is not None}
        names = {int(i): str(n) for i, n in self._by_id("projects", "id, linkname", ids)}
        for e in entries:  # (a deleted project: its name as it was)
            if e.resource == "projects" and e.id not in names and e.cols:
                names[e.id] = str(e.cols.get("linkname"))
        return names

    def _by_id(self, table: str, columns: str, ids: Iterable[int]) -> list[tuple[Any, ...]]:
        listed = sorted(ids)
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(listed), 500):
            chunk = listed[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows += self.reader.rows(f"SELECT {columns} FROM {table} WHERE id IN ({marks})", chunk)
        return rows

    def _object(self, entry: Entry, public: dict[tuple[str, int], bool]) -> Any:
        """The object as ``/api/`` shows it now (None: gone, or not shown)."""
        res = RESOURCES[entry.resource]
        shown = self.viewer.everything or public.get((entry.resource, entry.id), False)
        if res.public_column is not None and not shown:
            return None
        return representation(res, entry.id, self.origin, self.reader)


def _date(at: float) -> str:
    """When the mirror learnt of it, in UTC, as Patchwork writes dates."""
    moment = datetime.datetime.fromtimestamp(at, datetime.UTC).replace(tzinfo=None)
    return moment.isoformat()
