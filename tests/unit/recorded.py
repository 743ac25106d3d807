"""Recorded Patchwork answers as unit-test input (no mirror, no server).

The fixtures hold what real Patchwork instances answered (see
tests/fixtures/README.md); here they are read once per test run, their API
paths parsed, and a crawl's objects normalised into the documents the
mirror stores, as the sync would store them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mirror.model import Doc, Ref
from mirror.resources import RESOURCES
from mirror.store import Batch
from mirror.versions import VERSIONS
from sync.normalize import Normalizer
from sync.recorded import PLACEHOLDER, read_records
from tests.support import CONFORMANCE, CRAWL, FIXTURES, OTHER_CASES, OTHER_CRAWL

GENERATED = FIXTURES / "generated.jsonl.xz"
EXTRA = FIXTURES / "extra.jsonl.xz"
#: Every file of recorded answers to reads (the crawls are the sync's reads).
ANSWERS = (CONFORMANCE, GENERATED, EXTRA, OTHER_CASES)
#: Each instance's crawl, and the answers recorded from that instance.
INSTANCES = {"recorded": (CRAWL, (CONFORMANCE, GENERATED)), "other": (OTHER_CRAWL, (OTHER_CASES,))}

_API = re.compile(
    r"^/api/(?:(?P<version>[^/]+)/)?(?P<collection>[a-z]+)/"
    r"(?:(?P<id>\d+)/(?:(?P<sub>comments|checks)/(?:(?P<sub_id>\d+)/)?)?)?$"
)
#: Lists under a parent: (parent collection, sub-list) -> resource.
_SUBLISTS = {
    ("patches", "comments"): "patch_comments",
    ("covers", "comments"): "cover_comments",
    ("patches", "checks"): "checks",
}


@cache
def records(path: Path) -> tuple[dict[str, Any], ...]:
    """The records of one fixture file, read once."""
    return tuple(read_records(path))


@dataclass(frozen=True)
class ApiPath:
    """What a recorded request asked the API for."""

    #: The version segment as requested (``None``: the unversioned API).
    version: str | None
    resource: str
    parent_id: int | None
    #: The object's id, or ``None`` for a list.
    obj_id: int | None
    query: str


def api_path(path: str) -> ApiPath | None:
    """The list or detail ``path`` reads, if it reads one of a known version."""
    parts = urlsplit(path)
    match = _API.match(parts.path)
    if match is None or match["version"] not in (None, *VERSIONS):
        return None
    collection, obj_id = match["collection"], match["id"]
    if match["sub"]:
        resource = _SUBLISTS.get((collection, match["sub"]))
        parent_id, obj_id = int(obj_id), match["sub_id"]
    else:
        resource, parent_id = collection, None
    if resource not in RESOURCES:
        return None
    return ApiPath(
        match["version"], resource, parent_id, int(obj_id) if obj_id else None, parts.query
    )


@cache
def crawl_batch(crawl: Path = CRAWL) -> Batch:
    """Every object a recorded crawl read, normalised as the sync normalises
    it (lists first, then details, merged per object)."""
    normalizer = Normalizer(PLACEHOLDER)
    batch = Batch()
    read = [r for r in records(crawl) if r["status"] == 200 and r["method"] == "GET"]
    for record in sorted(read, key=lambda r: isinstance(r["body"], dict)):
        asked = api_path(record["path"])
        if asked is None:
            continue
        body = record["body"]
        for obj in body if isinstance(body, list) else [body]:
            normalizer.add(asked.resource, obj, batch, parent_id=asked.parent_id)
    return batch


@cache
def crawl_docs(crawl: Path = CRAWL) -> dict[Ref, Doc]:
    """The stored documents of :func:`crawl_batch`, by (table, id)."""
    return {
        (RESOURCES[name].table, obj_id): doc
        for name, docs in crawl_batch(crawl).docs.items()
        for obj_id, doc in docs.items()
    }
