"""Learning the upstream's patch states, which its API never lists.

A patch shows its state only as a slug, yet the ``state`` filter also
takes the state's id (and any id that is no state empties the list, even
beside valid ones), ``order=state`` sorts by the state's ``ordering``,
and ties in several orderings fall back on the state id (Patchwork's
covering index).  An instance with Patchwork's default states matches
the mirror's defaults; one with its own states does not.  So the sync
asks upstream:

* ``?state=<id>&per_page=1`` for ids 1, 2, ...: the slug of each id some
  patch is in;
* ``?state=<id in use>&state=<id>&per_page=1`` for each other id up to
  the highest seen (or the defaults'): whether it is a state at all (an
  id that is none empties the answer);
* ``?order=state`` over a shrinking set of ids in use: their order.

About two requests per state.  An upstream that does not answer the
probes (a recording, a proxy refusing them) leaves the mirror's states as
they are.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from mirror.resources import DEFAULT_STATES
from mirror.store import state_name

log = logging.getLogger(__name__)

#: Give up looking for more ids after this many in a row hold no patch.
MAX_EMPTY_RUN = 32

#: ``get(path)``: a JSON list from upstream, or ``None`` if it would not say.
GetList = Callable[[str], Awaitable[list[Any] | None]]

#: A state as the mirror stores it: (id, slug, name, ordering).
State = tuple[int, str, str, int]


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


async def probe(get: GetList, api: str, in_use: set[str], names: dict[str, str]) -> list[State]:
    """Upstream's states as far as the API tells; raises :class:`NoAnswer`.

    ``in_use``: the slugs patches show; ``names``: the names the mirror
    knows for slugs (the API shows none).
    """
    ids: dict[str, int] = {}
    state_id, empty_run = 0, 0
    while not in_use <= set(ids) and empty_run < MAX_EMPTY_RUN:
        state_id += 1
        slug = await _first_slug(get, api, [("state", state_id)])
        if slug is None or slug in ids:
            empty_run += 1
            continue
        empty_run = 0
        ids[slug] = state_id
    if not in_use <= set(ids):
        log.warning("states with no id found upstream: %s", sorted(in_use - set(ids)))
    if not ids:
        raise NoAnswer

    # Selection by asking for the lowest-ordered state among those left.
    remaining = dict(ids)
    ranked: list[State] = []
    while remaining:
        if len(remaining) == 1:
            slug = next(iter(remaining))
        else:
            params = [("order", "state"), *(("state", i) for i in remaining.values())]
            found = await _first_slug(get, api, params)
            if found not in remaining:
                raise NoAnswer
            slug = found
        ranked.append((remaining.pop(slug), slug, names.get(slug, state_name(slug)), len(ranked)))

    # Ids without patches: states or not?  A default state keeps its slug
    # if that id exists upstream and the slug is not elsewhere.
    default_slugs = {state_id: slug for state_id, slug, _, _ in DEFAULT_STATES}
    highest = max(max(ids.values()), max(default_slugs))
    some_id = next(iter(ids.values()))
    for state_id in range(1, highest + 1):
        if state_id in ids.values():
            continue
        if await _first_slug(get, api, [("state", some_id), ("state", state_id)]) is None:
            continue  # not a state: the filter emptied the list
        slug = default_slugs.get(state_id, "")
        if not slug or slug in ids:
            slug = f"unseen-state-{state_id}"  # no patch shows its slug
        ids[slug] = state_id
        ranked.append((state_id, slug, names.get(slug, ""), len(ranked)))
    return ranked
