"""A byte-bounded cache that drops its oldest entries first.

For the hottest look-ups of the reader (dozens per request), where an
LRU's bookkeeping in Python costs more than the look-up itself: a plain
dict, kept in insertion order.
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

#: Entries bigger than this share of the cache are not kept.
_MAX_SHARE = 8


class FifoCache(Generic[K, V]):
    """Entries under a byte budget, the oldest dropped first."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._data: dict[K, tuple[V, int]] = {}

    def get(self, key: K) -> V | None:
        entry = self._data.get(key)
        return None if entry is None else entry[0]

    def put(self, key: K, value: V, cost: int) -> None:
        if cost > self.max_bytes // _MAX_SHARE:
            return
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        while self.bytes + cost > self.max_bytes and self._data:
            oldest = next(iter(self._data))
            self.bytes -= self._data.pop(oldest)[1]
        self._data[key] = (value, cost)
        self.bytes += cost

    def clear(self) -> None:
        self._data.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._data)
