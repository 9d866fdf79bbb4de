"""Soft, last: a tie-break, so that equally good decisions do not depend on the solver's
search. The pairs (task, staff member) and (arrival, room) are put in a fixed order, the
first staff members, rooms, tasks and arrivals first, and pair k weighs 2^k: no two sets of
pairs weigh the same, so among the optima of every other rule exactly one is best, the one
that avoids the latest pairs. A tick with more than `EXACT_PAIRS` pairs (rare: long waiting
lists) falls back to weights polynomial in the ranks, which break most ties but not all."""

EXACT_PAIRS = 30


def build(problem, model, tick_vars, weight=None):
    return sum(coefficient * tick_vars.var(pair) for pair, coefficient in _coefficients(problem))


def pair_count(problem) -> int:
    return len(_ordered_pairs(problem))


def upper_bound(problem) -> int:
    return sum(coefficient for _, coefficient in _coefficients(problem))


def _ordered_pairs(problem):
    """(family, first, second, staff or room rank, task or arrival rank), in preference order."""
    pairs = [
        ("dispatch", task.key, staff.staff_id, j, i)
        for i, task in enumerate(problem.tasks)
        for j, staff in enumerate(problem.staff)
        if problem.may_do(task, staff)
    ]
    pairs += [
        ("book", arrival.patient_id, room_id, j, i)
        for i, arrival in enumerate(problem.arrivals)
        for j, room_id in enumerate(problem.free_rooms)
        if problem.may_book(arrival, room_id)
    ]
    return sorted(pairs, key=lambda p: (p[3], p[4], p[0]))


def _coefficients(problem):
    pairs = _ordered_pairs(problem)
    if len(pairs) <= EXACT_PAIRS:
        for k, (family, first, second, _, _) in enumerate(pairs):
            yield (family, first, second), 1 << k
        return
    big = len(pairs) + 1
    for family, first, second, j, i in pairs:
        yield (family, first, second), big * (j + 1) + (i + 1)
