"""Page-number pagination and the ``Link`` header, as Patchwork does them.

Patchwork uses DRF's PageNumberPagination with ``per_page`` (default 30,
at most 250) and builds an RFC 5988 ``Link`` header with ``next``,
``prev``, ``first`` and ``last``, in that order.  The links are the
request's own absolute URL with ``page`` replaced (or, for a ``prev`` to
page 1, removed); DRF re-encodes the query with its keys sorted, which we
reproduce with the same standard-library functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode

from multidict import MultiMapping

from mirror.query import last_value
from mirror.revision import pages

DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 250


class InvalidPage(Exception):
    """The requested page does not exist: 404 ``Invalid page.``"""


@dataclass(frozen=True)
class Page:
    number: int
    per_page: int
    count: int
    num_pages: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.per_page

    @property
    def limit(self) -> int:
        return max(0, min(self.per_page, self.count - self.offset))


def per_page(params: MultiMapping[str]) -> int:
    """``per_page``: a positive integer, capped at 250; else the default."""
    raw = last_value(params, "per_page")
    if raw is None:
        return DEFAULT_PER_PAGE
    try:
        value = int(raw)
    except ValueError:
        return DEFAULT_PER_PAGE
    if value <= 0:
        return DEFAULT_PER_PAGE
    return min(value, MAX_PER_PAGE)


def paginate(params: MultiMapping[str], count: int) -> Page:
    size = per_page(params)
    num_pages = pages(count, size)
    raw = last_value(params, "page") or "1"
    if raw == "last":
        number = num_pages
    else:
        try:
            number = int(raw)
        except ValueError:
            raise InvalidPage from None
        if number < 1 or number > num_pages:
            raise InvalidPage
    return Page(number, size, count, num_pages)


def link_header(base: str, query: str, page: Page) -> str:
    """The ``Link`` header for ``page`` of the list at ``base`` + ``query``.

    ``base`` is the absolute URL without query; ``query`` the raw query.
    Like DRF, each link carries the query's parameters re-encoded with the
    keys sorted and ``page`` set (or, for a ``prev`` link to page 1,
    removed); we encode the other parameters once, around ``page``.
    """
    items = parse_qs(query, keep_blank_values=True)
    items.pop("page", None)
    ordered = sorted(items.items())
    before = urlencode([item for item in ordered if item[0] < "page"], doseq=True)
    after = urlencode([item for item in ordered if item[0] > "page"], doseq=True)

    def url(number: int | None) -> str:
        parts = [before] if before else []
        if number is not None:
            parts.append(f"page={number}")
        if after:
            parts.append(after)
        return f"{base}?{'&'.join(parts)}" if parts else base

    links = []
    if page.number < page.num_pages:
        links.append(f'<{url(page.number + 1)}>; rel="next"')
    if page.number > 1:
        links.append(f'<{url(None if page.number == 2 else page.number - 1)}>; rel="prev"')
    links.append(f'<{url(1)}>; rel="first"')
    links.append(f'<{url(page.num_pages)}>; rel="last"')
    return ", ".join(links)
