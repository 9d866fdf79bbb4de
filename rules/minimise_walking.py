"""Soft: minimise walking. Costs each dispatch its walk to where the task starts, and each
booking the escort's walk from the entrance to the room, per `weight` a second."""

from rules.units import per_second


def build(problem, model, tick_vars, weight):
    cost = [per_second(problem.walking_ms[pair], weight) * var
            for pair, var in tick_vars.dispatch.items()]
    cost += [per_second(problem.room_walking_ms[room_id], weight) * var
             for (patient_id, room_id), var in tick_vars.book.items()]
    return sum(cost)
