"""Soft: free rooms fast. An escort to the exit starts the turnover of a room (then the
cleaning), so dispatching one is worth `weight` seconds of waiting to a porter."""

from rules.units import per_second


def build(problem, model, tick_vars, weight):
    bonus = per_second(1000, weight)
    escorts_out = [var for (key, staff_id), var in tick_vars.dispatch.items()
                   if tick_vars.kind_of_task[key] == "escort_out"]
    return -bonus * sum(escorts_out)
