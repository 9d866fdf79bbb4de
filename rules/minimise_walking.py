"""Soft: minimise walking. Costs each dispatch its walk to where the task starts, and each
booking the escort's walk from the entrance to the room, per `weight` a second."""

from rules.units import per_second, separable_build


def pair_cost(problem, task, staff, weight):
    return per_second(problem.walking_ms[task.key, staff.staff_id], weight)


def room_cost(problem, room_id, weight):
    return per_second(problem.room_walking_ms[room_id], weight)


build = separable_build(pair_cost=pair_cost, room_cost=room_cost)
