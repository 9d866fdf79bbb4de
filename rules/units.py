"""What the soft rules share: integer objective units, and the shape of their terms.

A soft rule's term is a sum over the tick's pairs: each dispatch (task, staff member) and
each booking (arrival, room) costs something, and nothing else does. A rule gives its cost in
up to five parts, each a function of the problem, the thing(s) and its weight: `task_cost`
(the task alone), `pair_cost` (task and staff member), `arrival_cost`, `room_cost` and
`booking_cost` (arrival and room; a booking costs the sum of the three). Costs that depend
on the task alone are asked once per task, so a waiting list of hundreds costs hundreds of
calls, not hundreds times the staff. Because the
terms are linear in the pairs, the `cpsat` policy can solve a tick as assignment problems
(`scheduler.assignment`) and get the optimum of the CP-SAT model these terms build.
"""

UNIT_MS = 100  # time is counted in tenths of a second


def per_second(ms: int, weight: float) -> int:
    """`weight` per second of `ms`, in objective units."""
    return round(ms * weight / UNIT_MS)


def separable_build(
    task_cost=None, pair_cost=None, arrival_cost=None, room_cost=None, booking_cost=None
):
    """A rule's `build(problem, model, tick_vars, weight)` for the CP-SAT model, from its
    costs: the objective term is each pair variable times its cost."""

    def build(problem, model, tick_vars, weight):
        tasks = {t.key: t for t in problem.tasks}
        staff = {s.staff_id: s for s in problem.staff}
        arrivals = {a.patient_id: a for a in problem.arrivals}
        term = 0
        for (key, staff_id), var in tick_vars.dispatch.items():
            cost = task_cost(problem, tasks[key], weight) if task_cost else 0
            if pair_cost:
                cost += pair_cost(problem, tasks[key], staff[staff_id], weight)
            term += cost * var
        for (patient_id, room_id), var in tick_vars.book.items():
            cost = arrival_cost(problem, arrivals[patient_id], weight) if arrival_cost else 0
            if room_cost:
                cost += room_cost(problem, room_id, weight)
            if booking_cost:
                cost += booking_cost(problem, arrivals[patient_id], room_id, weight)
            term += cost * var
        return term

    return build
