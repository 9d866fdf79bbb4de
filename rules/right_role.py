"""Hard: a task goes to a staff member of the right role (escorts to porters, visits to
nurses and doctors, cleaning to cleaners).

The rule is structural: a dispatch variable exists only for a pair allowed by
`TickProblem.may_do`, which checks the role (and, with `skills`, the grade).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scheduler.problem import FreeStaff, OpenTask


def eligible(task: OpenTask, staff: FreeStaff) -> bool:
    return task.role == staff.role


def build(problem, model, tick_vars, weight=None):
    return 0
