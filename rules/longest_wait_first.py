"""Soft: serve the longest-waiting first. Rewards each dispatch and each admission by how
long the task or the patient has waited, per `weight` a second."""

from rules.units import per_second, separable_build


def task_cost(problem, task, weight):
    return -per_second(problem.now_ms - task.created_ms, weight)


def arrival_cost(problem, arrival, weight):
    return -per_second(problem.now_ms - arrival.arrived_ms, weight)


build = separable_build(task_cost=task_cost, arrival_cost=arrival_cost)
