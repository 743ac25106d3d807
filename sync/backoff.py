"""Waiting out failures: pauses that double while they repeat."""

from __future__ import annotations

#: Longest pause while upstream (or the mirror's disk) keeps failing.
MAX_BACKOFF = 300.0


class Backoff:
    """The pause after each failure: ``first``, then doubling up to ``most``;
    a success, or real progress despite the failure, starts over."""

    def __init__(self, first: float, most: float = MAX_BACKOFF) -> None:
        self.first = first
        self.most = most
        self.current = 0.0

    def failed(self, progressed: bool = False) -> float:
        """Seconds to wait after a failure."""
        if progressed:
            self.current = 0.0
        self.current = min(max(2 * self.current, self.first), self.most)
        return self.current

    def succeeded(self) -> None:
        self.current = 0.0

    def __bool__(self) -> bool:
        """Whether the last attempt failed."""
        return self.current > 0
