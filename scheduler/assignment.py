"""Exact one-to-one assignment with a lexicographic tie-break: the solver of the `cpsat`
policy's parts (see `scheduler.policies`).

Rows are *units* (staff members or free rooms, in their fixed order), columns are *items*
(tasks or admitted arrivals, in theirs); `cost[u][i]` is the objective of the rules for the
pair, in integer units. Exactly `min(units, items)` pairs are chosen — the hard rules' "no
staff member idle while a task waits" and "referred only when no room is free" — at the least
total cost. Among equal totals the tie-break picks one, always the same: the **last** unit is
left unused if an optimum allows it, otherwise it gets the **earliest** item an optimum
allows; then the unit before it, and so on. That is the order in which weights 2^k on the
pairs sorted by (unit, item) rank the optima, at any size, so the optimum is unique.

How: an assignment problem's linear program is integral, so a shortest-augmenting-path
solver (scipy's `linear_sum_assignment`) finds the optimum exactly. The tie-break is exact
too: units are settled a few at a time, from the last, each stage adding to the cost a weight
`base^p * (item + 1)` for its units that outweighs everything below it, and fixing what those
units got. Stages are sized so that every sum stays an integer that a float64 holds exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from scipy.optimize import linear_sum_assignment
else:
    # numpy takes a tenth of a second to import and scipy.optimize half a second: the ticks
    # of a small hospital never need either (`SMALL`), so each is imported where it is used.
    def linear_sum_assignment(cost):
        from scipy.optimize import linear_sum_assignment as solve

        return solve(cost)


# float64 holds every integer below 2^53; the solver adds and subtracts path sums, so keep
# the largest total well below that.
_EXACT = 2**50


# Below this many pairs, plain Python integers beat numpy's and scipy's call overheads.
SMALL = 64


def assign(
    cost: Sequence[Sequence[int]] | np.ndarray,
    tie_break: bool = True,
    allowed: Sequence[Sequence[bool]] | np.ndarray | None = None,
) -> list[tuple[int, int]]:
    """The chosen (unit, item) pairs, sorted by unit. With `allowed`, only allowed pairs are
    chosen, as many as possible (that comes first), then the least cost, then the tie-break."""
    if not len(cost) or not len(cost[0]):
        return []
    if allowed is not None and not all(all(row) for row in allowed):
        import numpy as np

        return _assign_allowed(
            np.asarray(cost, dtype=np.int64), np.asarray(allowed, dtype=bool), tie_break
        )
    if len(cost) == 1:  # one unit: its cheapest item, the earliest among equals
        row = cost[0]
        return [(0, min(range(len(row)), key=lambda i: (row[i], i)))]
    if len(cost[0]) == 1:  # one item: the cheapest unit, the earliest among equals
        return [(min(range(len(cost)), key=lambda u: (cost[u][0], u)), 0)]
    if len(cost) * len(cost[0]) <= SMALL:
        return _small(cost, tie_break)
    import numpy as np

    matrix = np.asarray(cost, dtype=np.int64)
    units, items = candidates(matrix)
    sub = matrix[np.ix_(units, items)]
    pairs = _lexicographic(sub) if tie_break else _optimum(sub)
    return sorted((int(units[u]), int(items[i])) for u, i in pairs)


def _assign_allowed(
    cost: np.ndarray, allowed: np.ndarray, tie_break: bool
) -> list[tuple[int, int]]:
    """A pair that is not allowed costs more than every allowed pair of any answer put
    together, and weighs nothing in the tie-break: the least total then picks as few of
    them as possible, and those are dropped (the unit stays unused)."""
    import numpy as np

    if not allowed.any():
        return []
    low, high = int(cost[allowed].min()), int(cost[allowed].max())
    forbidden = (high - low + 1) * (min(cost.shape) + 1)
    total = np.where(allowed, cost - low, forbidden)
    if total.size <= SMALL:
        pairs = _small(total.tolist(), tie_break, allowed.tolist())
    elif tie_break:
        pairs = _lexicographic(total, allowed)
    else:
        pairs = _optimum(total)
    return sorted((u, i) for u, i in pairs if allowed[u, i])


def _small(
    cost: Sequence[Sequence[int]] | np.ndarray,
    tie_break: bool,
    allowed: Sequence[Sequence[bool]] | None = None,
) -> list[tuple[int, int]]:
    """The whole lexicographic objective in one matrix of exact Python integers: for small
    problems, and for costs too large for float64 sums."""
    n_units, n_items = len(cost), len(cost[0])
    if not tie_break:
        total = [[int(c) for c in row] for row in cost]
    else:
        base = n_items + 1
        scale = base**n_units
        total = [
            [
                int(c) * scale + (base**u * (i + 1) if allowed is None or allowed[u][i] else 0)
                for i, c in enumerate(row)
            ]
            for u, row in enumerate(cost)
        ]
    if n_units <= n_items:
        return sorted(hungarian(total))
    return sorted((u, i) for i, u in hungarian([list(col) for col in zip(*total)]))


def hungarian(cost: list[list[int]]) -> list[tuple[int, int]]:
    """A least-cost assignment of every row to its own column (rows <= columns), by shortest
    augmenting paths with potentials; exact for Python integers of any size."""
    n, m = len(cost), len(cost[0])
    u = [0] * (n + 1)
    v = [0] * (m + 1)
    owner = [0] * (m + 1)  # owner[j]: the row holding column j (1-based), 0 for none
    for row in range(1, n + 1):
        owner[0] = row
        j0 = 0
        best: list[Any] = [None] * (m + 1)  # an int once column j is reached
        way = [0] * (m + 1)
        used = [False] * (m + 1)
        while True:
            used[j0] = True
            i0 = owner[j0]
            delta: Any = None
            j1 = 0
            line = cost[i0 - 1]
            for j in range(1, m + 1):
                if not used[j]:
                    reduced = line[j - 1] - u[i0] - v[j]
                    if best[j] is None or reduced < best[j]:
                        best[j], way[j] = reduced, j0
                    if delta is None or best[j] < delta:
                        delta, j1 = best[j], j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    best[j] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    return [(owner[j] - 1, j - 1) for j in range(1, m + 1) if owner[j]]


def candidates(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The units and items that can be in the answer. With more items than units, each unit
    can only get one of its `units` cheapest items (earliest first among equals): were it
    given another, one of those would be free, no dearer, and no later. The same holds the
    other way round with more units than items."""
    import numpy as np

    n_units, n_items = cost.shape
    if n_units <= n_items:
        cheapest = np.argsort(cost, axis=1, kind="stable")[:, :n_units]
        return np.arange(n_units), np.unique(cheapest)
    cheapest = np.argsort(cost, axis=0, kind="stable")[:n_items, :]
    return np.unique(cheapest), np.arange(n_items)


def _scarce_side_from_zero(cost: np.ndarray) -> np.ndarray:
    """Every line of the scarcer side is matched in any answer, so a constant taken off each
    of them changes every answer's total alike: it keeps the numbers small."""
    if cost.shape[0] <= cost.shape[1]:
        return cost - cost.min(axis=1, keepdims=True)
    return cost - cost.min(axis=0, keepdims=True)


def _optimum(cost: np.ndarray) -> list[tuple[int, int]]:
    import numpy as np

    shifted = _scarce_side_from_zero(cost)
    if int(shifted.max()) * (min(shifted.shape) + 1) * 2 >= _EXACT:
        return _small(shifted.tolist(), tie_break=False)
    rows, cols = linear_sum_assignment(shifted.astype(np.float64))
    return list(zip(rows.tolist(), cols.tolist()))


def _lexicographic(cost: np.ndarray, allowed: np.ndarray | None = None) -> list[tuple[int, int]]:
    import numpy as np

    units = list(range(cost.shape[0]))
    items = list(range(cost.shape[1]))
    pairs: list[tuple[int, int]] = []
    while units and items:
        stage = _scarce_side_from_zero(cost[np.ix_(units, items)])
        weighed = None if allowed is None else allowed[np.ix_(units, items)]
        base = len(items) + 1
        k = _stage_size(int(stage.max()), base, len(units), min(stage.shape))
        if k == 0:  # too large for float64 sums even one unit at a time: exact integers
            rest = _small(stage.tolist(), True, None if weighed is None else weighed.tolist())
            pairs += [(units[row], items[col]) for row, col in rest]
            break
        # The last k units, the last one weighing most: base^p * (item position + 1).
        total = stage * base**k
        item_rank = np.arange(1, len(items) + 1, dtype=np.int64)
        for p in range(k):
            row = len(units) - k + p
            weights = item_rank * base**p
            total[row, :] += weights if weighed is None else weights * weighed[row]
        rows, cols = linear_sum_assignment(total.astype(np.float64))
        got = dict(zip(rows.tolist(), cols.tolist()))
        settled = [
            row
            for row in range(len(units) - k, len(units))
            if row in got and (weighed is None or weighed[row, got[row]])
        ]
        pairs += [(units[row], items[got[row]]) for row in settled]
        taken = {got[row] for row in settled}
        units = units[: len(units) - k]
        items = [item for col, item in enumerate(items) if col not in taken]
    return pairs


def _stage_size(spread: int, base: int, n_units: int, matched: int) -> int:
    """How many units one stage can settle with every sum exact (0: not even one)."""
    k = 0
    while k < n_units and (spread + 1) * base ** (k + 1) * (matched + 1) * 2 < _EXACT:
        k += 1
    return k
