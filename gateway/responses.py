"""Answers as Patchwork writes them: JSON, redirects, the 404 page; the
vocabulary every room of the server answers in (gateway.http delivers them)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any
from urllib.parse import quote

import orjson

from mirror.revision import Window

JSON = "application/json"
HTML = "text/html; charset=utf-8"
#: On every page (HTML): never framed by another site (Patchwork's Django
#: sends DENY too), never sniffed as another type.
HTML_SAFETY = (("X-Frame-Options", "DENY"), ("X-Content-Type-Options", "nosniff"))


_SEPARATORS = re.compile(rb"\xe2\x80[\xa8\xa9]")


@dataclass(frozen=True)
class Answer:
    """A complete response, cacheable as is."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    #: For a full page of a list: where it ends, so that a change after
    #: it leaves the cached answer as it is (mirror.revision).
    window: Window | None = None


#: "No such thing here": the caller answers with the site's 404 page (the
#: one upstream serves, which names the path).
NOT_FOUND = Answer(404)


def retry_later(message: str) -> Answer:
    """A 503 that says when to try again."""
    answer = detail(503, message)
    return Answer(answer.status, answer.body, (*answer.headers, ("Retry-After", "5")))


def json_body(data: Any) -> bytes:
    """Compact UTF-8 JSON, as DRF's renderer writes it.

    DRF escapes U+2028 and U+2029 (valid JSON, invalid JavaScript); orjson
    does not, so we do.
    """
    body = orjson.dumps(data)
    if b"\xe2" in body and _SEPARATORS.search(body):  # memchr first: usually absent
        body = _SEPARATORS.sub(lambda m: b"\\u202" + (b"8" if m[0][2] == 0xA8 else b"9"), body)
    return body


def json_answer(
    status: int, data: Any, allow: str | None = None, link: str | None = None
) -> Answer:
    return json_bytes_answer(status, json_body(data), allow, link)


def json_bytes_answer(
    status: int,
    body: bytes,
    allow: str | None = None,
    link: str | None = None,
    window: Window | None = None,
) -> Answer:
    hdrs = [("Content-Type", JSON)]
    if link:
        hdrs.append(("Link", link))
    if allow:
        hdrs.append(("Allow", allow))
    hdrs.append(("Vary", "Accept"))
    return Answer(status, body, tuple(hdrs), window)


def detail(status: int, message: str, allow: str | None = None) -> Answer:
    return json_answer(status, {"detail": message}, allow)


def redirect(status: int, location: str) -> Answer:
    return Answer(status, b"", (("Content-Type", HTML), ("Location", location)))


def escape_uri_path(path: str) -> str:
    """Percent-encode a path as Django does when it builds a URL from one."""
    return quote(path, safe="/:@&+$,-_.!~*'()")


class NotFoundPage:
    """The upstream's own HTML 404 page, learnt by the sync worker.

    Patchwork's page names the requested path; the sync stores the page
    split around a probe path so that we can answer any path alike.  Until
    one is known we answer a small page of our own.
    """

    def __init__(self, template: tuple[str, str] | None = None) -> None:
        self.template = template

    def render(self, path: str) -> bytes:
        shown = html.escape(quote(path), quote=True)
        if self.template:
            before, after = self.template
            return (before + shown + after).encode()
        return (
            "<!DOCTYPE html>\n<html><head><title>Not found</title></head><body>"
            f"<h1>Not found</h1><p>No page at <code>{shown}</code>.</p></body></html>\n"
        ).encode()

    def answer(self, path: str) -> Answer:
        return Answer(404, self.render(path), (("Content-Type", HTML),))


READ_METHODS = ("GET", "HEAD")


class View(IntEnum):
    """Which of the answers to one URL a cached answer is."""

    #: The anonymous answer (the same for every caller who may read it).
    PUBLIC = 0
    #: People and users: only authenticated callers see them (alike).
    AUTHENTICATED = 1
    #: The browsable API's page of the answer.
    PAGE = 2
    AUTHENTICATED_PAGE = 3


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer, where it comes from, and whether to keep it."""

    answer: Answer
    #: "mirror" or "upstream".
    source: str
    #: Kept in the cache of answers under the request's key in ``view``
    #: (answers built from the mirror alike for every caller who may see them).
    keep: bool = False
    view: View = View.PUBLIC

    @classmethod
    def mirror(cls, answer: Answer, keep: bool = False, view: View = View.PUBLIC) -> Reply:
        return cls(answer, "mirror", keep, view)

    @classmethod
    def upstream(cls, answer: Answer) -> Reply:
        return cls(answer, "upstream")
