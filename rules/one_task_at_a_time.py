"""Hard: a staff member does one task at a time and a task is given to one staff member; a
new arrival's escort can be dispatched only if the arrival is admitted."""


def build(problem, model, tick_vars, weight=None):
    for staff in problem.staff:
        model.add_at_most_one(tick_vars.for_staff(staff.staff_id))
    for task in problem.tasks:
        pairs = tick_vars.for_task(task.key)
        if task.for_arrival:
            model.add(sum(pairs) <= tick_vars.admitted(task.patient_id))
        else:
            model.add_at_most_one(pairs)
    return 0
