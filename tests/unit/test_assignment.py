"""The assignment solver against brute force: every matching of small random matrices,
ranked as the rules rank them — as many allowed pairs as possible, then the least cost, then
the tie-break's 2^k weights on the pairs sorted by (unit, item) — on each of its paths: the
small exact one, the staged float64 one, and the fallback to exact integers."""

from __future__ import annotations

import itertools
import random

import pytest

import scheduler.assignment as assignment


def brute_force(cost, allowed):
    units, items = len(cost), len(cost[0])
    best = None

    def extend(unit, used, pairs):
        nonlocal best
        if unit == units:
            key = (
                -len(pairs),
                sum(cost[u][i] for u, i in pairs),
                sum(1 << (u * items + i) for u, i in pairs),
            )
            if best is None or key < best[0]:
                best = (key, sorted(pairs))
            return
        extend(unit + 1, used, pairs)
        for item in range(items):
            if allowed[unit][item] and item not in used:
                extend(unit + 1, used | {item}, pairs + [(unit, item)])

    extend(0, frozenset(), [])
    return best[1]


@pytest.mark.parametrize(
    "small, exact",
    [
        (64, 2**50),  # small matrices in Python integers
        (0, 2**50),  # every matrix through scipy, in as few stages as fit
        (0, 2**14),  # one or two units a stage
        (0, 2**8),  # not even one unit fits: exact integers
    ],
)
@pytest.mark.parametrize("masked", [False, True])
def test_the_answer_is_the_brute_force_optimum(monkeypatch, small, exact, masked):
    monkeypatch.setattr(assignment, "SMALL", small)
    monkeypatch.setattr(assignment, "_EXACT", exact)
    rng = random.Random(f"{small}-{exact}-{masked}")
    for _ in range(300):
        units, items = rng.randint(1, 5), rng.randint(1, 5)
        spread = rng.choice([2, 3, 10, 1000])  # few distinct costs: many ties
        cost = [[rng.randrange(spread) - 5 for _ in range(items)] for _ in range(units)]
        allowed = [[not masked or rng.random() < 0.6 for _ in range(items)] for _ in range(units)]
        got = assignment.assign(cost, True, allowed if masked else None)
        assert got == brute_force(cost, allowed), (cost, allowed)


def test_a_large_dense_problem_is_solved_in_stages_and_stays_a_matching():
    rng = random.Random(1)
    cost = [[rng.randrange(5) for _ in range(300)] for _ in range(120)]
    pairs = assignment.assign(cost)
    assert len(pairs) == 120
    assert len({i for _, i in pairs}) == 120
    # Every unit got one of its cheapest items, and nobody could swap to gain.
    for (u, i), (v, j) in itertools.combinations(pairs, 2):
        assert cost[u][i] + cost[v][j] <= cost[u][j] + cost[v][i]
