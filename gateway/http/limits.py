"""Bounds on what one request may make the gateway do.

Every request is checked before any work: its method, the length of its
Host, path and query, the number of query parameters and of values per
parameter, and a search's size.  What is beyond a bound gets a clear 4xx
in Patchwork's JSON shape; every real client stays far below them (the
longest legitimate queries are a few hundred bytes: a subject as ``q``,
six ``state`` values).  With these bounds no request can compile an
unbounded SQL statement, hold the event loop, or put an unbounded key
in a cache.

aiohttp itself bounds the request line and each header (8 KiB) and
answers malformed HTTP with a 400 (kept short: gateway.http.protocol).
Verdicts on headers, remembered for speed (a Host, an Accept header, an
Accept-Encoding), are bounded here too (:class:`Remembered`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

from aiohttp import web
from multidict import MultiMapping

from gateway.responses import Answer, detail
from mirror.query import search_terms

#: Methods Patchwork's views serve; any other is refused here.
METHODS = frozenset(("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"))
#: A host name is at most 253 characters, then a port.
MAX_HOST = 262
MAX_PATH = 2048
#: The ``Link`` header repeats the URL four times: a longer query would
#: make it too long for common clients and proxies (8 KiB per header).
MAX_QUERY = 2048
MAX_PARAMETERS = 64
#: Values of one repeated parameter (``state=1&state=2...``).
MAX_VALUES = 64
#: A search: characters, and terms (each is a LIKE per searched column).
MAX_SEARCH = 1024
MAX_SEARCH_TERMS = 32
#: Request bodies (forwarded writes), as Django's own default bound.
MAX_BODY = 2_621_440


def check(request: web.Request, allow: str | None) -> Answer | None:
    """The refusal of a request beyond a bound, or ``None``.

    ``allow`` is the ``Allow`` header of the API view the path names, if any.
    """
    if request.method not in METHODS:
        return detail(405, f'Method "{request.method[:32]}" not allowed.', allow)
    if len(request.headers.get("Host", "")) > MAX_HOST:
        return detail(400, "The Host header is too long.")
    url = request.rel_url
    if len(url.raw_path) > MAX_PATH or len(url.raw_query_string) > MAX_QUERY:
        return detail(414, "Request-URI too long.")
    params: MultiMapping[str] = request.query
    if len(params) > MAX_PARAMETERS:
        return detail(400, f"Too many query parameters (at most {MAX_PARAMETERS}).")
    for name in set(params):
        if len(params.getall(name)) > MAX_VALUES:
            return detail(400, f"Too many values of {name[:40]!r} (at most {MAX_VALUES}).")
    searched = params.getall("q", [])
    if searched:
        q = searched[-1]
        if len(q) > MAX_SEARCH or len(search_terms(q)) > MAX_SEARCH_TERMS:
            return detail(
                400,
                f"Search too long (at most {MAX_SEARCH} characters and {MAX_SEARCH_TERMS} words).",
            )
    return None


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Remembered(dict[K, V]):
    """Verdicts on what clients send (a Host, an Accept header), remembered
    for speed: ``remembered[value]`` judges a value not seen yet.  At most
    ``entries`` of them, each of at most ``chars`` characters (``size``);
    beyond, a verdict is made anew each time, so that ever new or huge
    values cannot grow it.  (A dict, so that a verdict known already costs
    one look-up in C: every request asks for one.)"""

    def __init__(
        self,
        judge: Callable[[K], V],
        size: Callable[[K], int],
        entries: int = 256,
        chars: int = 300,
    ) -> None:
        super().__init__()
        self._judge = judge
        self._size = size
        self._entries = entries
        self._chars = chars

    def __missing__(self, key: K) -> V:
        verdict = self._judge(key)
        if len(self) < self._entries and self._size(key) <= self._chars:
            self[key] = verdict
        return verdict
