"""A byte-bounded LRU cache of complete answers to anonymous reads.

Keyed by the origin and the raw path with query, so every distinct URL a
client uses is cached as sent; cleared whenever the mirror changes.
"""

from __future__ import annotations

from cachetools import LRUCache

from gateway.responses import Answer

Key = tuple[str, str]

#: Answers bigger than this share of the cache are not kept.
_MAX_SHARE = 8


class ResponseCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lru: LRUCache[Key, Answer] = LRUCache(
            maxsize=max(max_bytes, 1), getsizeof=lambda a: len(a.body) + 256
        )

    def get(self, key: Key) -> Answer | None:
        return self._lru.get(key)

    def put(self, key: Key, answer: Answer) -> None:
        if self.max_bytes and len(answer.body) + 256 <= self.max_bytes // _MAX_SHARE:
            self._lru[key] = answer

    def clear(self) -> None:
        self._lru.clear()
