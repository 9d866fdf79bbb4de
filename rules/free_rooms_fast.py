"""Soft: free rooms fast. An escort to the exit starts the turnover of a room (then the
cleaning), so dispatching one is worth `weight` seconds of waiting to a porter."""

from rules.units import per_second, separable_build


def task_cost(problem, task, weight):
    return -per_second(1000, weight) if task.kind == "escort_out" else 0


build = separable_build(task_cost=task_cost)
