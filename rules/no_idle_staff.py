"""Hard: after every tick no staff member is idle while a task of their role waits. So
exactly min(waiting tasks, free staff) tasks of each role are dispatched."""


def build(problem, model, tick_vars, weight=None):
    for role in problem.roles:
        pairs = [
            var
            for (key, staff_id), var in tick_vars.dispatch.items()
            if tick_vars.role_of_staff[staff_id] == role
        ]
        model.add(sum(pairs) == problem.dispatches_due(role))
    return 0
