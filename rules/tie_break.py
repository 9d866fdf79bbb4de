"""Soft, last: a tie-break, so that equally good decisions do not depend on the solver's
search. Among the optima of every other rule, prefer the first staff members and rooms (by
order), then pair earlier tasks and arrivals with earlier staff and rooms: the weight
K * j + i * (n + 1 - j) of task i and staff member j does both, the first term choosing the
staff, the second, by the rearrangement inequality, making their pairing unique."""


from rules.right_role import eligible


def build(problem, model, tick_vars, weight=None):
    return sum(coefficient * tick_vars.var(pair) for pair, coefficient in _coefficients(problem))


def upper_bound(problem) -> int:
    return sum(coefficient for _, coefficient in _coefficients(problem))


def _coefficients(problem):
    yield from _pairs("dispatch", [t.key for t in problem.tasks],
                      [s.staff_id for s in problem.staff],
                      lambda i, j: eligible(problem.tasks[i], problem.staff[j]))
    yield from _pairs("book", [a.patient_id for a in problem.arrivals], problem.free_rooms,
                      lambda i, j: True)


def _pairs(family, firsts, seconds, allowed):
    m, n = len(firsts), len(seconds)
    big = m * n + 1
    for i, first in enumerate(firsts):
        for j, second in enumerate(seconds):
            if allowed(i, j):
                yield (family, first, second), big * (j + 1) + (i + 1) * (n - j)
