"""Soft: keep doctors for the patients only they may see (`skills`: ESI 1-2). A doctor sent
to an ESI 3-5 visit costs `weight` seconds of waiting, so a free nurse goes instead unless
that saves more; a doctor still takes such a visit rather than stand idle (a hard rule)."""

from rules.units import per_second, separable_build


def pair_cost(problem, task, staff, weight):
    if problem.skills and task.kind == "visit" and task.acuity > 2 and staff.grade == "doctor":
        return per_second(1000, weight)
    return 0


build = separable_build(pair_cost=pair_cost)
