"""Hard: a task goes to a staff member of the right role (escorts to porters, visits to
nurses and doctors, cleaning to cleaners).

The rule is structural: a dispatch variable exists only for an eligible pair.
"""

from scheduler.problem import FreeStaff, OpenTask


def eligible(task: OpenTask, staff: FreeStaff) -> bool:
    return task.role == staff.role
