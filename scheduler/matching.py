"""Bipartite matching by augmenting paths: who can be paired with whom, at most one each.

Used where the hard rules ask "how many at most?" — how many arrivals the free rooms can
take when some rooms suit only some patients, how many tasks the free staff can do when only
doctors may see the most urgent — and to admit arrivals in order of priority: each one is
admitted if a room can still be found for it and everyone admitted before it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

L = TypeVar("L")
R = TypeVar("R")


class Matching(Generic[L, R]):
    def __init__(self, right: Sequence[R], fits: Callable[[L, R], bool]):
        self._right = list(right)
        self._fits = fits
        self._owner: list[L | None] = [None] * len(self._right)

    def add(self, left: L) -> bool:
        """Match `left` too, moving earlier ones along augmenting paths if need be; False
        (and nothing changed) when no matching holds them all."""
        seen = [False] * len(self._right)

        def augment(item: L) -> bool:
            for j, candidate in enumerate(self._right):
                if not seen[j] and self._fits(item, candidate):
                    seen[j] = True
                    owner = self._owner[j]
                    if owner is None or augment(owner):
                        self._owner[j] = item
                        return True
            return False

        return augment(left)


def greedy_by_priority(
    left: Sequence[L], right: Sequence[R], fits: Callable[[L, R], bool]
) -> list[L]:
    """Those of `left`, taken in its order, that can be matched along with every one taken
    before them: a largest matchable set, and the best one in that order."""
    matching = Matching(right, fits)
    return [item for item in left if matching.add(item)]


def maximum_matching_size(
    left: Sequence[L], right: Sequence[R], fits: Callable[[L, R], bool]
) -> int:
    return len(greedy_by_priority(left, right, fits))
