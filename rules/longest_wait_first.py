"""Soft: serve the longest-waiting first. Rewards each dispatch and each admission by how
long the task or the patient has waited, per `weight` a second."""

from rules.units import per_second


def build(problem, model, tick_vars, weight):
    reward = []
    for task in problem.tasks:
        waited = per_second(problem.now_ms - task.created_ms, weight)
        reward += [waited * var for var in tick_vars.for_task(task.key)]
    for arrival in problem.arrivals:
        waited = per_second(problem.now_ms - arrival.arrived_ms, weight)
        reward.append(waited * tick_vars.admitted(arrival.patient_id))
    return -sum(reward)
