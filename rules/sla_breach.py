"""Soft: service levels. Tasks with a target wait (`[sla]`, per kind, tighter for ESI 1-2
patients) are served earliest deadline first: a dispatch earns `weight` per second the task
has waited beyond its target, or loses it per second it still has to go. Of two tasks, the
one closer to breaching (or further past) its target goes first, which is what keeps
breaches few; tasks without a target are not weighed."""

from rules.units import per_second, separable_build


def task_cost(problem, task, weight):
    target = problem.sla_ms.get((task.kind, task.acuity <= 2))
    if not target:
        return 0
    return -per_second(problem.now_ms - task.created_ms - target, weight)


build = separable_build(task_cost=task_cost)
