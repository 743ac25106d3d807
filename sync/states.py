"""Learning the upstream's patch states, which its API never lists.

A patch shows its state only as a slug, yet the ``state`` filter also
takes the state's id, ``order=state`` sorts by the state's ``ordering``,
and ties in several orderings fall back on the state id (Patchwork's
covering index).  An instance with Patchwork's default states matches
the mirror's defaults; one with its own states does not.  So the sync
asks: ``?state=<id>&per_page=1`` for ids 1, 2, ... tells which slug each
id has (for every state some patch is in), and ``?order=state`` over a
shrinking set of those ids tells their relative order.

About two requests per state in use.  An upstream that does not answer
the probes (a recording, a proxy refusing them) leaves the mirror's
states as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

log = logging.getLogger(__name__)

#: Give up looking for more ids after this many in a row hold no patch.
MAX_EMPTY_RUN = 32

#: ``get(path)``: a JSON list from upstream, or ``None`` if it would not say.
GetList = Callable[[str], Awaitable[list[Any] | None]]


class NoAnswer(Exception):
    """Upstream does not answer state probes; keep what the mirror has."""


async def _first_slug(get: GetList, api: str, params: list[tuple[str, Any]]) -> str | None:
    query = urlencode([*params, ("per_page", 1)])
    items = await get(f"{api}/patches/?{query}")
    if items is None:
        raise NoAnswer
    if not items:
        return None
    slug = items[0].get("state") if isinstance(items[0], dict) else None
    if not isinstance(slug, str):
        raise NoAnswer
    return slug


async def probe(get: GetList, api: str, slugs_in_use: set[str]) -> list[tuple[int, str, int]]:
    """``(id, slug, ordering)`` of every state in use; raises :class:`NoAnswer`."""
    ids: dict[str, int] = {}
    state_id, empty_run = 0, 0
    while not slugs_in_use <= set(ids) and empty_run < MAX_EMPTY_RUN:
        state_id += 1
        slug = await _first_slug(get, api, [("state", state_id)])
        if slug is None or slug in ids:
            empty_run += 1
            continue
        empty_run = 0
        ids[slug] = state_id
    if not slugs_in_use <= set(ids):
        log.warning("states with no id found upstream: %s", sorted(slugs_in_use - set(ids)))

    # Selection by asking for the lowest-ordered state among those left.
    remaining = dict(ids)
    ranked: list[tuple[int, str, int]] = []
    while remaining:
        if len(remaining) == 1:
            slug = next(iter(remaining))
        else:
            params = [("order", "state"), *(("state", i) for i in remaining.values())]
            slug = await _first_slug(get, api, params)
            if slug not in remaining:
                raise NoAnswer
        ranked.append((remaining.pop(slug), slug, len(ranked)))
    return ranked
