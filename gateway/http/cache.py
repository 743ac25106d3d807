"""A byte-bounded LRU cache of complete answers to anonymous reads.

Keyed by the origin and the raw path with query, so every distinct URL a
client uses is cached as sent; cleared whenever the mirror changes.  An
entry is an answer prepared for delivery (see gateway.http.delivery): its
validator, its headers and, once a client asked, its gzip bytes.  An
entry costs what it holds: its key, its headers and its body, plus a
fixed overhead for the objects around them, so that a flood of distinct
small answers is bounded as surely as a few large ones.
"""

from __future__ import annotations

from typing import NamedTuple

from cachetools import LRUCache

from gateway.http.delivery import Prepared

#: (origin, raw path and query, view: see gateway.http.context.View).
Key = tuple[str, str, int]

#: Answers bigger than this share of the cache are not kept.
_MAX_SHARE = 8
#: Bytes of Python objects around an entry (tuples, the Answer, the LRU's
#: own bookkeeping), beyond the strings and bytes counted one by one.
OVERHEAD = 600


class _Entry(NamedTuple):
    prepared: Prepared
    cost: int


def cost(key: Key, prepared: Prepared) -> int:
    """What keeping ``prepared`` under ``key`` takes, in bytes."""
    answer = prepared.answer
    headers = sum(len(name) + len(value) for name, value in answer.headers)
    size = len(key[0]) + len(key[1]) + headers + len(answer.body) + OVERHEAD
    return size + prepared.cost


class ResponseCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lru: LRUCache[Key, _Entry] = LRUCache(
            maxsize=max(max_bytes, 1), getsizeof=lambda entry: entry.cost
        )

        #: Look-ups that found an answer, and that did not (gateway.ops.metrics).
        self.hits = 0
        self.misses = 0

    @property
    def bytes(self) -> int:
        return int(self._lru.currsize)

    def __len__(self) -> int:
        return len(self._lru)

    def get(self, key: Key) -> Prepared | None:
        entry = self._lru.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        return entry.prepared

    def put(self, key: Key, prepared: Prepared) -> None:
        """Keep ``prepared``; again after it grew (its gzip was added)."""
        size = cost(key, prepared)
        if self.max_bytes and size <= self.max_bytes // _MAX_SHARE:
            self._lru[key] = _Entry(prepared, size)
        else:
            self._lru.pop(key, None)

    def clear(self) -> None:
        self._lru.clear()
