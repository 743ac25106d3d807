"""Content negotiation as DRF does it: JSON, the browsable API, or neither.

Patchwork's API has two renderers, JSON and DRF's browsable HTML API.  A
``format`` query parameter picks one by name (``json`` or ``api``; any
other value is a 404), else the ``Accept`` header does: DRF groups the
media ranges by specificity (not by ``q``), most specific first, and in
each group tries the JSON renderer before the HTML one.
"""

from __future__ import annotations

from enum import Enum

RENDERERS = (("json", "application/json"), ("html", "text/html"))


class Choice(Enum):
    JSON = "json"
    HTML = "html"
    NO_SUCH_FORMAT = "no such format"  # 404 {"detail": "Not found."}
    NOT_ACCEPTABLE = "not acceptable"  # 406


def _parse(media_range: str) -> tuple[str, str, dict[str, str]]:
    full, *params = media_range.split(";")
    main, _, sub = full.strip().partition("/")
    parsed = {}
    for param in params:
        key, _, value = param.partition("=")
        parsed[key.strip()] = value.strip()
    return main.strip(), sub.strip(), parsed


def _precedence(main: str, sub: str, params: dict[str, str]) -> int:
    if main == "*":
        return 0
    if sub == "*":
        return 1
    if not params or list(params) == ["q"]:
        return 2
    return 3


def _matches(renderer: str, main: str, sub: str, params: dict[str, str]) -> bool:
    """Whether a renderer satisfies a media range (its parameters ignored)."""
    r_main, r_sub = renderer.split("/")
    return main in ("*", r_main) and sub in ("*", r_sub)


def negotiate(fmt: str | None, accept: str | None) -> Choice:
    if fmt:
        if fmt == "json":
            return Choice.JSON
        if fmt == "api":
            return Choice.HTML
        return Choice.NO_SUCH_FORMAT
    ranges = [_parse(token) for token in (accept or "*/*").split(",") if token.strip()]
    for level in (3, 2, 1, 0):
        group = [r for r in ranges if _precedence(*r) == level]
        for name, media in RENDERERS:
            if any(_matches(media, *r) for r in group):
                return Choice(name)
    return Choice.NOT_ACCEPTABLE
