"""Soft: urgency weighs every waiting list. Dispatching a task for an ESI 1 patient is worth
`weight` seconds of waiting more than for ESI 2, and so on down to ESI 5. (Admissions follow
urgency as a hard rule: `acuity_order`.)"""

from rules.units import per_second, separable_build


def task_cost(problem, task, weight):
    return -per_second((5 - task.acuity) * 1000, weight)


build = separable_build(task_cost=task_cost)
