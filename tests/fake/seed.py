"""The fake as a recorded crawl shows it (``tests/fixtures/``).

The recording holds one request and its answer per JSON line (optionally
xz-compressed), with the recorded instance's origin replaced by
:data:`~tests.fake.api.PLACEHOLDER`.  Its API answers at the latest
version become rows again: objects and events with references, key
orders as recorded, relations, a bundle's patches in the order its
recorded mbox shows (the order they were added in), and, when the patches
show other states than Patchwork's defaults, the states the crawl's state
probes reveal (``?state=<id>``, ``?order=state&state=...``, as the sync
asks them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from sync.recorded import read_records  # (the recordings' file format)
from tests.fake.api import VERSION, _route
from tests.fake.reads import DEFAULT_KEYS, LIST_EXCLUDES, Reads
from tests.fake.state import (
    DEFAULT_STATES,
    DERIVED,
    EVENT_PAYLOADS,
    PARENTS,
    RESOURCES,
    SELF_ONLY,
    State,
    _parse_date,
)

CRAWL = Path(__file__).parent.parent / "fixtures" / "crawl.jsonl.xz"


#: A bundle's mbox, and the patch ids in one (in the order of the mails).
_BUNDLE_MBOX = re.compile(r"^/bundle/(?P<owner>[^/]+)/(?P<name>[^/]+)/mbox/$")
_PATCHWORK_ID = re.compile(r"^X-Patchwork-Id: (\d+)$", re.M)


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


class Seeding(Reads):
    """Loading a recorded crawl (and objects other identities' answers show)."""

    @classmethod
    def from_crawl(cls, path: str | Path = CRAWL, *, states: Iterable[State] | None = None) -> Self:
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
    ) -> Self:
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
