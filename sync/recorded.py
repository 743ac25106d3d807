"""Recorded Patchwork responses, served as if by an upstream.

The recordings (JSON lines, optionally xz-compressed) hold one request and
its response per line, with the recorded instance's origin replaced by
``http://UPSTREAM``.  :class:`Recording` answers a path with the recorded
response and our own origin in its place.  The demo mode syncs from it,
and the test suite serves it over real HTTP as the upstream.
"""

from __future__ import annotations

import lzma
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from sync.upstream import Response

PLACEHOLDER = "http://UPSTREAM"


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    opener = lzma.open if str(path).endswith(".xz") else open
    with opener(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield orjson.loads(line)


def request_key(path: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A path with its query parameters in a canonical order."""
    parts = urlsplit(path)
    return parts.path, tuple(sorted(parse_qsl(parts.query, keep_blank_values=True)))


class Recording:
    """Recorded responses, looked up by method, path and query.

    With ``identities`` the caller's identity (the record's ``auth``) is
    part of the key; otherwise only anonymous and ``cibot`` GETs are kept
    (the crawl's identity), the first record of a request winning.
    """

    def __init__(
        self,
        records: Iterator[dict[str, Any]],
        origin: str = PLACEHOLDER,
        *,
        identities: bool = False,
    ) -> None:
        self.origin = origin
        self.identities = identities
        self._responses: dict[tuple[Any, ...], dict[str, Any]] = {}
        for rec in records:
            method = rec.get("method", "GET")
            auth = rec.get("auth")
            if not identities:
                if method != "GET" or auth not in (None, "cibot"):
                    continue
                auth = None
            self._responses.setdefault((auth, method, *request_key(rec["path"])), rec)

    @classmethod
    def from_file(cls, path: str | Path, origin: str = PLACEHOLDER) -> Recording:
        return cls(read_records(path), origin)

    def add_404(self, path: str, html: str) -> None:
        """Answer ``path`` with a 404 page (the recordings only name them)."""
        self._responses[(None, "GET", *request_key(path))] = {
            "status": 404,
            "headers": {"Content-Type": "text/html; charset=utf-8"},
            "body": html,
        }

    def lookup(self, path: str, method: str = "GET", auth: str | None = None) -> Response | None:
        rec = self._responses.get((auth, method, *request_key(path)))
        if rec is None:
            return None
        headers = {k: v.replace(PLACEHOLDER, self.origin) for k, v in rec["headers"].items()}
        body = rec["body"]
        raw = body.encode() if isinstance(body, str) else orjson.dumps(body)
        raw = raw.replace(PLACEHOLDER.encode(), self.origin.encode())
        return Response(rec["status"], headers, raw)


class RecordingSource:
    """A :class:`~sync.upstream.Source` reading a recording, for the demo."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording

    async def get(self, path: str) -> Response:
        found = self.recording.lookup(path)
        if found is None:
            return Response(404, {"Content-Type": "text/plain"}, b"not recorded\n")
        return found

    async def close(self) -> None:
        pass
