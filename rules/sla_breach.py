"""Soft: service levels. A task still waiting past its target (`[sla]`, per kind, tighter for
ESI 1-2 patients) earns its dispatch `weight` per second overdue, so breaches are caught up
first."""

from rules.units import per_second, separable_build


def task_cost(problem, task, weight):
    target = problem.sla_ms.get((task.kind, task.acuity <= 2))
    if not target:
        return 0
    return -per_second(max(0, problem.now_ms - task.created_ms - target), weight)


build = separable_build(task_cost=task_cost)
