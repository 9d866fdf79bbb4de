"""Soft, last: a unique tie-break, so that equally good decisions never depend on the
solver's search. Among the optima of every other rule, prefer pairing earlier tasks and
arrivals (by order) with earlier staff and rooms (by order): weights i * (n + 1 - j) make
that pairing the unique best for the sets chosen (the rearrangement inequality)."""


from rules.right_role import eligible


def build(problem, model, tick_vars, weight=None):
    return sum(coefficient * tick_vars.var(pair) for pair, coefficient in _coefficients(problem))


def upper_bound(problem) -> int:
    return sum(coefficient for _, coefficient in _coefficients(problem))


def _coefficients(problem):
    staff_count, room_count = len(problem.staff), len(problem.free_rooms)
    for i, task in enumerate(problem.tasks, start=1):
        for j, staff in enumerate(problem.staff, start=1):
            if eligible(task, staff):
                yield ("dispatch", task.key, staff.staff_id), i * (staff_count + 1 - j)
    for i, arrival in enumerate(problem.arrivals, start=1):
        for j, room_id in enumerate(problem.free_rooms, start=1):
            yield ("book", arrival.patient_id, room_id), i * (room_count + 1 - j)
