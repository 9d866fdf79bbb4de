"""Hard: a patient is referred only when, after this tick's decisions, no room is free. So
exactly min(arrivals, free rooms) arrivals are admitted."""


def build(problem, model, tick_vars, weight=None):
    if problem.arrivals:
        model.add(sum(tick_vars.book.values()) == problem.admissions_due())
    return 0
