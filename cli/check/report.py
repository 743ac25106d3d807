"""What a check found: by resource, the objects on one side only, and the
differing fields by dotted path, each kept with both values; which objects
have changes pending; counts of everything, details of the first few."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from sync.reading import SUBLISTS

#: Differences (and ids) kept per resource and field; the rest are counted.
KEEP = 1000
#: A value longer than this (as JSON) is kept in brief.
BRIEF = 500

#: The per-parent lists (comments and checks), by name: read by parent.
CHILDREN = {sub.child: sub for sub in SUBLISTS}


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


#: A key one side has and the other has not.
ABSENT: Any = _Absent()


@dataclass
class Capped:
    """A count, and the first :data:`KEEP` of the things counted."""

    count: int = 0
    items: list[Any] = field(default_factory=list)

    def add(self, item: Any) -> None:
        self.count += 1
        if len(self.items) < KEEP:
            self.items.append(item)


@dataclass
class Difference:
    obj_id: int
    path: str
    mirror: Any
    upstream: Any


@dataclass
class Tally:
    """What the check found for one resource."""

    checked: int = 0
    missing: Capped = field(default_factory=Capped)
    extra: Capped = field(default_factory=Capped)
    #: Events upstream has, newer than the mirror's cursor (not counted).
    newer: Capped = field(default_factory=Capped)
    #: Objects with at least one differing field.
    differing: int = 0
    #: Differences by field (dotted path, list indexes as ``*``).
    fields: dict[str, Capped] = field(default_factory=dict)
    skipped: str | None = None
    #: Comments and checks: the parents whose lists were read.
    parents: int = 0

    @property
    def differences(self) -> int:
        return self.missing.count + self.extra.count + self.differing

    def differ(self, obj_id: int, path: str, mine: Any, theirs: Any) -> None:
        """Keep one differing value, under its field."""
        capped = self.fields.setdefault(field_of(path), Capped())
        capped.add(Difference(obj_id, path, *brief(mine, theirs)))


@dataclass
class Report:
    upstream: str
    mirror: str
    sample: int | None
    cursor: str | None
    initial_sync_complete: bool
    resources: dict[str, Tally] = field(default_factory=dict)
    #: (resource, id) named by events newer than the mirror's cursor.
    pending: set[tuple[str, int]] = field(default_factory=set)
    requests: int = 0
    seconds: float = 0.0

    @property
    def differences(self) -> int:
        return sum(t.differences for t in self.resources.values())

    @property
    def drift(self) -> bool:
        return self.differences > 0

    def is_pending(self, resource: str, obj_id: int) -> bool:
        return (resource, obj_id) in self.pending

    def document(self) -> dict[str, Any]:
        """The report as one JSON-able document (``--json``)."""
        resources: dict[str, Any] = {}
        for name, tally in self.resources.items():

            def ids(capped: Capped, name: str = name) -> dict[str, Any]:
                items = [
                    {"id": i, "pending": True} if self.is_pending(name, i) else {"id": i}
                    for i in capped.items
                ]
                return {"count": capped.count, "objects": items, "more": capped.count - len(items)}

            fields = {}
            for path, capped in sorted(tally.fields.items()):
                diffs = []
                for d in capped.items:
                    entry: dict[str, Any] = {"id": d.obj_id, "path": d.path}
                    if d.mirror is not ABSENT:
                        entry["mirror"] = d.mirror
                    if d.upstream is not ABSENT:
                        entry["upstream"] = d.upstream
                    if self.is_pending(name, d.obj_id):
                        entry["pending"] = True
                    diffs.append(entry)
                fields[path] = {
                    "count": capped.count,
                    "differences": diffs,
                    "more": capped.count - len(diffs),
                }
            entry = {
                "skipped": tally.skipped,
                "checked": tally.checked,
                "missing": ids(tally.missing),
                "extra": ids(tally.extra),
                "differing": tally.differing,
                "fields": fields,
                "newer": ids(tally.newer),
            }
            if name in CHILDREN:
                entry["parents"] = tally.parents
            resources[name] = entry
        return {
            "upstream": self.upstream,
            "mirror": self.mirror,
            "mode": "full" if self.sample is None else "sample",
            "sample": self.sample,
            "cursor": self.cursor,
            "initial_sync_complete": self.initial_sync_complete,
            "drift": self.drift,
            "differences": self.differences,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "resources": resources,
        }


_INDEX = re.compile(r"\.[0-9]+(?=\.|$)")


def field_of(path: str) -> str:
    """The field a difference is grouped under: list indexes as ``*``."""
    return _INDEX.sub(".*", path)


def ids_of(value: Any) -> list[Any] | None:
    """The ids of a list of objects that all have one, else None."""
    if isinstance(value, list) and value and all(isinstance(v, dict) and "id" in v for v in value):
        return [v["id"] for v in value]
    return None


def brief(mine: Any, theirs: Any) -> tuple[Any, Any]:
    """Two differing values to keep in a report: shortened alike if either is large."""
    sizes = [len(orjson.dumps(v)) for v in (mine, theirs) if v is not ABSENT]
    if max(sizes, default=0) <= BRIEF:
        return mine, theirs
    return _short(mine), _short(theirs)


def _short(value: Any) -> Any:
    if value is ABSENT:
        return value
    ids = ids_of(value)
    if ids is not None:
        return {"brief": f"a list of {len(ids)} objects", "ids": ids[:100]}
    if isinstance(value, str):
        return value if len(value) <= 200 else f"{value[:200]}… ({len(value):,} characters)"
    text = orjson.dumps(value)
    if len(text) <= BRIEF:
        return value
    return text[:200].decode("utf-8", "replace") + f"… ({len(text):,} bytes of JSON)"
