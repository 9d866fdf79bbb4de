"""Soft: service levels. Tasks with a target wait (`[sla]`, per kind, tighter for ESI 1-2
patients) are served earliest deadline first: a dispatch loses `weight` per second the task
still has to go before its target. Of two tasks, the one closer to breaching its target goes
first, which is what keeps breaches few; one already past it weighs as one at its deadline
(its breach is counted already; the other rules, waiting and urgency, still push it on).
Tasks without a target are not weighed."""

from rules.units import per_second, separable_build


def task_cost(problem, task, weight):
    target = problem.sla_ms.get((task.kind, task.acuity <= 2))
    if not target:
        return 0
    # A breach is counted once, when the target passes: beyond it, waiting longer breaks
    # nothing more, so a breached task weighs as one at its deadline.
    return -per_second(min(0, problem.now_ms - task.created_ms - target), weight)


build = separable_build(task_cost=task_cost)
