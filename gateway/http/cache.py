"""A byte-bounded LRU cache of complete answers to anonymous reads.

Keyed by the origin and the raw path with query, so every distinct URL a
client uses is cached as sent.  An entry is an answer prepared for
delivery (see gateway.http.delivery): its validator, its headers and,
once a client asked, its gzip bytes; and what it was built from
(mirror.dependencies), so that a change of the mirror drops only the
answers it reaches: the others keep their bytes and their ``ETag``.  An
entry costs what it holds: its key, its headers, its body and what it
depends on, plus a fixed overhead for the objects around them, so that a
flood of distinct small answers is bounded as surely as a few large ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from gateway.http.delivery import Prepared
from mirror.dependencies import Changed, Dep, DependentCache, Membership
from mirror.revision import revise_window

#: (origin, raw path and query, view: see gateway.responses.View).
Key = tuple[str, str, int]

#: Bytes of Python objects around an entry (tuples, the Answer, the LRU's
#: own bookkeeping), beyond the strings and bytes counted one by one.
OVERHEAD = 600


def _revised_page(
    prepared: Prepared, member: Membership, changes: list[Changed]
) -> tuple[Prepared, int] | None:
    """A page of a list whose rows and links ``changes`` leave as they
    were: the same answer, with the list's count as it is now."""
    window = prepared.answer.window
    revised = None if window is None else revise_window(window, member, changes)
    if revised is None:
        return None
    prepared.answer = replace(prepared.answer, window=revised)
    return prepared, 0


def cost(key: Key, prepared: Prepared) -> int:
    """What keeping ``prepared`` under ``key`` takes, in bytes."""
    answer = prepared.answer
    headers = sum(len(name) + len(value) for name, value in answer.headers)
    size = len(key[0]) + len(key[1]) + headers + len(answer.body) + OVERHEAD
    return size + prepared.cost


class ResponseCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: DependentCache[Key, Prepared] = DependentCache(max_bytes, notes=False)
        #: The answer kept under a key, or None: the LRU's own look-up, with
        #: no call around it (every cached answer and every 304 come here).
        self.get: Callable[[Key], Prepared | None] = self._entries.get

    @property
    def hits(self) -> int:
        """Look-ups that found an answer (gateway.ops.metrics)."""
        return self._entries.hits

    @property
    def misses(self) -> int:
        return self._entries.misses

    @property
    def bytes(self) -> int:
        return self._entries.bytes

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: Key, prepared: Prepared, deps: Iterable[Dep] | None = None) -> None:
        """Keep ``prepared``, built from ``deps``; again after it grew (its
        gzip was added: ``deps`` as before)."""
        entry = self._entries.entry_deps(key) if deps is None else frozenset(deps)
        if entry is None:
            return  # (dropped since: a change reached it)
        self._entries.put(key, prepared, cost(key, prepared), entry)

    def follow(self, changes: list[Changed]) -> int:
        """Drop the answers ``changes`` reach, but keep a full page that
        they leave as it was (a row added after it); how many went."""
        return self._entries.apply(changes, _revised_page)

    def clear(self) -> None:
        self._entries.clear()
