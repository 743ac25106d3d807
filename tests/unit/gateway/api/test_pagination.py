"""Page numbers, ``per_page`` and the ``Link`` header, as DRF's page-number
pagination gives them upstream (gateway.api.pagination)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
from multidict import MultiDict

from gateway.api.pagination import InvalidPage, Page, link_header, paginate, per_page
from sync.recorded import PLACEHOLDER
from tests.unit.recorded import ANSWERS, records

BASE = "http://gw.example/api/1.4/patches/"


def params(query: str) -> MultiDict[str]:
    return MultiDict(parse_qsl(query, keep_blank_values=True))


@pytest.mark.parametrize(
    ("query", "size"),
    [
        ("", 30),
        ("per_page=5", 5),
        ("per_page=250", 250),
        ("per_page=251", 250),
        ("per_page=99999999999999999999", 250),
        ("per_page=0", 30),
        ("per_page=-3", 30),
        ("per_page=ten", 30),
        ("per_page=1.5", 30),
        ("per_page=", 30),
        ("per_page=5&per_page=7", 7),
    ],
)
def test_per_page_is_positive_capped_at_250_and_the_last_given(query: str, size: int) -> None:
    assert per_page(params(query)) == size


@pytest.mark.parametrize(
    ("query", "number"),
    [("", 1), ("page=", 1), ("page=2", 2), ("page=4", 4), ("page=last", 4), ("page=1&page=3", 3)],
)
def test_pages_are_numbered_from_one_and_last_names_the_last(query: str, number: int) -> None:
    page = paginate(params(query), 95)
    assert (page.number, page.num_pages) == (number, 4)


@pytest.mark.parametrize("query", ["page=0", "page=-1", "page=5", "page=two", "page=1.0"])
def test_a_page_that_does_not_exist_is_invalid(query: str) -> None:
    with pytest.raises(InvalidPage):
        paginate(params(query), 95)


def test_the_last_page_holds_what_is_left() -> None:
    page = paginate(params("page=4&per_page=30"), 95)
    assert (page.offset, page.limit) == (90, 5)


def test_an_empty_list_has_one_empty_page() -> None:
    page = paginate(params(""), 0)
    assert (page.number, page.num_pages, page.limit) == (1, 1, 0)
    with pytest.raises(InvalidPage):
        paginate(params("page=2"), 0)


def _links(header: str) -> dict[str, str]:
    return {rel: url for url, rel in re.findall(r'<([^>]*)>; rel="(\w+)"', header)}


def test_a_single_page_links_first_and_last_only() -> None:
    header = link_header(BASE, "", Page(1, 30, 3, 1))
    assert header == f'<{BASE}?page=1>; rel="first", <{BASE}?page=1>; rel="last"'


def test_a_middle_page_links_next_prev_first_last_in_that_order() -> None:
    header = link_header(BASE, "page=3", Page(3, 30, 200, 7))
    assert header == (
        f'<{BASE}?page=4>; rel="next", <{BASE}?page=2>; rel="prev", '
        f'<{BASE}?page=1>; rel="first", <{BASE}?page=7>; rel="last"'
    )


def test_prev_to_the_first_page_drops_page() -> None:
    links = _links(link_header(BASE, "page=2&per_page=5", Page(2, 5, 20, 4)))
    assert links["prev"] == f"{BASE}?per_page=5"
    assert links["first"] == f"{BASE}?page=1&per_page=5"


def test_the_last_page_has_no_next_and_the_first_no_prev() -> None:
    assert set(_links(link_header(BASE, "page=4", Page(4, 30, 95, 4)))) == {"prev", "first", "last"}
    assert set(_links(link_header(BASE, "", Page(1, 30, 95, 4)))) == {"next", "first", "last"}


def test_links_carry_the_query_re_encoded_with_its_keys_sorted() -> None:
    query = "q=a+b&state=new&order=-date&project=2&project=1&since=&x=a%2Bb&page=2"
    links = _links(link_header(BASE, query, Page(2, 30, 95, 4)))
    assert links["next"] == (
        f"{BASE}?order=-date&page=3&project=2&project=1&q=a+b&since=&state=new&x=a%2Bb"
    )


def test_every_recorded_link_header_is_reproduced() -> None:
    """Each recorded list's ``Link``, from its path, its page and its number
    of pages (read off its ``last`` link)."""
    checked, wrong = 0, []
    for record in (r for path in ANSWERS for r in records(path)):
        recorded = record["headers"].get("Link")
        if record["method"] != "GET" or record["status"] != 200 or not recorded:
            continue
        parts = urlsplit(record["path"])
        asked = params(parts.query)
        last = parse_qs(urlsplit(_links(recorded)["last"]).query).get("page", ["1"])
        page = paginate(asked, int(last[-1]) * per_page(asked))
        if link_header(PLACEHOLDER + parts.path, parts.query, page) != recorded:
            wrong.append(record["path"])
        checked += 1
    assert wrong == []
    assert checked > 4000
