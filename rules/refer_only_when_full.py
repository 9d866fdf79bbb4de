"""Hard: a patient is referred only when, after this tick's decisions, no room it may use is
free. So exactly as many arrivals are admitted as the free rooms can take between them
(`TickProblem.admitted`)."""


def build(problem, model, tick_vars, weight=None):
    if problem.arrivals:
        model.add(sum(tick_vars.book.values()) == problem.admissions_due())
    return 0
